package mysql

import (
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
		[]string{"CREATE TABLE gitems | CREATE TABLE | CREATE TABLE IF NOT EXISTS gitems (id int PRIMARY KEY, name varchar(?)) | testdb"},
		dbtest.Repeat("INSERT gitems | INSERT | INSERT INTO gitems (id, name) VALUES (?, ?) | testdb", 100),
		[]string{
			"SELECT gitems | SELECT | SELECT id, name FROM gitems WHERE id < ? | testdb | rows 10",
			"SELECT no_such_table | SELECT | SELECT * FROM no_such_table WHERE x = ? | testdb | error 1146 1146",
			"UPDATE gitems | UPDATE | UPDATE gitems SET name = ? WHERE id = ? | testdb",
			"DELETE gitems | DELETE | DELETE FROM gitems WHERE id = ? | testdb",
			"START TRANSACTION | START TRANSACTION | START TRANSACTION | testdb",
			"UPDATE gitems | UPDATE | UPDATE gitems SET name = ? WHERE id = ? | testdb",
			"COMMIT | COMMIT | COMMIT | testdb",
		})
	cases := map[string][]string{
		"gomysql-1": gomysql,
		"mariadb-1": {
			"CREATE TABLE t | CREATE TABLE | CREATE TABLE t (id int, secret varchar(?)) | testdb",
			"INSERT t | INSERT | INSERT INTO t VALUES (?, ?) | testdb",
			"SELECT t | SELECT | SELECT * FROM t | testdb | rows 1",
			"SELECT nope | SELECT | SELECT * FROM nope | testdb | error 1146 1146",
		},
		"pymysql-1": {
			"SET | SET | SET AUTOCOMMIT = ? | testdb",
			"CREATE TABLE pitems | CREATE TABLE | CREATE TABLE IF NOT EXISTS pitems (id int PRIMARY KEY, name varchar(?)) | testdb",
			"INSERT pitems | INSERT | INSERT INTO pitems (id, name) VALUES (?, ?) | testdb",
			"COMMIT | COMMIT | COMMIT | testdb",
			"SELECT pitems | SELECT | SELECT id, name FROM pitems WHERE id IN (?) | testdb | rows 1",
			"SELECT | SELECT | SELECT ? | testdb | rows 1",
			"SELECT | SELECT | SELECT ? | testdb | rows 1",
			"UPDATE pitems | UPDATE | UPDATE pitems SET name = name WHERE id = ? | testdb",
			"SELECT missing_table | SELECT | SELECT * FROM missing_table WHERE secret = ? | testdb | error 1146 1146",
			" | COM_INIT_DB |  | testdb",
		},
	}
	dbtest.CheckCaptures(t, cases, newDecoder)
	for name := range cases {
		steps, err := dbtest.LoadCapture("testdata/" + name + ".capture")
		if err != nil {
			t.Fatal(err)
		}
		d := New(&db.Stats{}).NewDecoder(protocol.Client, &dbtest.Recorder{T: t}).(*decoder)
		if err := dbtest.Play(d, steps, nil); err != nil || d.system != db.MariaDB {
			t.Errorf("%s: system %q (%v), want mariadb", name, d.system, err)
		}
	}
}

// TestCapturesCapped replays the captures as the sockets collector sees
// them (4096 bytes from the start of each read, 128 from its end): every
// read of these workloads fits, so the exchanges are the same.
func TestCapturesCapped(t *testing.T) {
	dbtest.CheckCapturesCapped(t, newDecoder, nil, 0)
}

func newDecoder(stats *db.Stats, role protocol.Role, h protocol.Handler) protocol.Decoder {
	return New(stats).NewDecoder(role, h)
}
