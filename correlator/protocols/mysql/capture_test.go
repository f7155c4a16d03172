package mysql

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/correlator/protocols/db"
	"github.com/periscope-apm/periscope/correlator/protocols/db/dbtest"
)

// TestCaptures replays what real clients and a real MariaDB 10.11 said to
// each other (scripts/dbcapture/capture.sh).
func TestCaptures(t *testing.T) {
	gomysql := slices.Concat(
		[]string{"CREATE TABLE gitems |  | CREATE TABLE IF NOT EXISTS gitems (id int PRIMARY KEY, name varchar(?)) | testdb"},
		dbtest.Repeat("INSERT gitems |  | INSERT INTO gitems (id, name) VALUES (?, ?) | testdb", 100),
		[]string{
			"SELECT gitems |  | SELECT id, name FROM gitems WHERE id < ? | testdb | rows 10",
			"SELECT no_such_table |  | SELECT * FROM no_such_table WHERE x = ? | testdb | error 1146 1146",
			"UPDATE gitems |  | UPDATE gitems SET name = ? WHERE id = ? | testdb",
			"DELETE gitems |  | DELETE FROM gitems WHERE id = ? | testdb",
			"START TRANSACTION |  | START TRANSACTION | testdb",
			"UPDATE gitems |  | UPDATE gitems SET name = ? WHERE id = ? | testdb",
			"COMMIT |  | COMMIT | testdb",
		})
	cases := map[string][]string{
		"gomysql-1": gomysql,
		"mariadb-1": {
			"CREATE TABLE t |  | CREATE TABLE t (id int, secret varchar(?)) | testdb",
			"INSERT t |  | INSERT INTO t VALUES (?, ?) | testdb",
			"SELECT t |  | SELECT * FROM t | testdb | rows 1",
			"SELECT nope |  | SELECT * FROM nope | testdb | error 1146 1146",
		},
		"pymysql-1": {
			"SET |  | SET AUTOCOMMIT = ? | testdb",
			"CREATE TABLE pitems |  | CREATE TABLE IF NOT EXISTS pitems (id int PRIMARY KEY, name varchar(?)) | testdb",
			"INSERT pitems |  | INSERT INTO pitems (id, name) VALUES (?, ?) | testdb",
			"COMMIT |  | COMMIT | testdb",
			"SELECT pitems |  | SELECT id, name FROM pitems WHERE id IN (?) | testdb | rows 1",
			"SELECT |  | SELECT ? | testdb | rows 1",
			"SELECT |  | SELECT ? | testdb | rows 1",
			"UPDATE pitems |  | UPDATE pitems SET name = name WHERE id = ? | testdb",
			"SELECT missing_table |  | SELECT * FROM missing_table WHERE secret = ? | testdb | error 1146 1146",
			" | COM_INIT_DB |  | testdb",
		},
	}
	for name, want := range cases {
		for _, role := range []protocol.Role{protocol.Client, protocol.Server} {
			stats := &db.Stats{}
			var last *decoder
			got := dbtest.Replay(t, "testdata/"+name+".capture", func(h protocol.Handler) protocol.Decoder {
				last = New(stats).NewDecoder(role, h).(*decoder)
				return last
			})
			dbtest.Compare(t, name, got, want)
			if last.system != db.MariaDB {
				t.Errorf("%s: system %q, want mariadb", name, last.system)
			}
		}
	}
}

// TestCapturesCapped replays the captures as the sockets collector sees
// them (4096 bytes from the start of each read, 128 from its end): every
// read of these workloads fits, so the exchanges are the same.
func TestCapturesCapped(t *testing.T) {
	files, err := filepath.Glob("testdata/*.capture")
	if err != nil || len(files) == 0 {
		t.Fatalf("no captures: %v", err)
	}
	for _, f := range files {
		stats := &db.Stats{}
		rec := &dbtest.Recorder{T: t}
		got := dbtest.ReplayCapped(t, f, New(stats).NewDecoder(protocol.Client, rec), rec)
		full := dbtest.Replay(t, f, func(h protocol.Handler) protocol.Decoder {
			return New(&db.Stats{}).NewDecoder(protocol.Client, h)
		})
		dbtest.Compare(t, f, got, full)
		if stats.LostSync.Load() != 0 || rec.Open() != 0 {
			t.Errorf("%s: lost %d, open %d", f, stats.LostSync.Load(), rec.Open())
		}
	}
}
