package postgres

import (
	"slices"
	"testing"

	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/correlator/protocols/db"
	"github.com/periscope-apm/periscope/correlator/protocols/db/dbtest"
)

// TestCaptures replays what real clients and a real PostgreSQL 15 said to
// each other (scripts/dbcapture/capture.sh).
func TestCaptures(t *testing.T) {
	pgx := func(batch int) []string {
		return slices.Concat(
			[]string{"CREATE TABLE gitems | CREATE TABLE | CREATE TABLE IF NOT EXISTS gitems (id int PRIMARY KEY, name text) | testdb"},
			dbtest.Repeat("INSERT gitems | INSERT | INSERT INTO gitems (id, name) VALUES ($1, $2) | testdb", 100),
			dbtest.Repeat("SELECT gitems | SELECT | SELECT name FROM gitems WHERE id = $1 | testdb | rows 1", batch),
			[]string{
				"SELECT no_such_table | SELECT | SELECT * FROM no_such_table WHERE x = $1 | testdb | error 42P01 42P01",
				"begin | begin | begin | testdb",
				"UPDATE gitems | UPDATE | UPDATE gitems SET name = $1 WHERE id = $2 | testdb",
				"commit | commit | commit | testdb",
			})
	}
	cases := map[string][]string{
		"psql-1": {
			"CREATE TABLE t | CREATE TABLE | CREATE TABLE t (id int, secret text) | testdb",
			"INSERT t | INSERT | INSERT INTO t VALUES (?, ?), (?, ?) | testdb",
			"SELECT t | SELECT | SELECT * FROM t WHERE id IN (?) | testdb | rows 2",
			"SELECT | SELECT | SELECT ? | testdb | rows 1",
			"SELECT | SELECT | SELECT ? | testdb | rows 1",
			"SELECT nope | SELECT | SELECT * FROM nope WHERE s = ? | testdb | error 42P01 42P01",
		},
		"psql-copy-1": {
			"COPY t | COPY | COPY t FROM STDIN | testdb",
			"COPY t | COPY | COPY t TO STDOUT | testdb | rows 4",
			"BEGIN | BEGIN | BEGIN | testdb",
			"DELETE t | DELETE | DELETE FROM t WHERE id = ? | testdb",
			"COMMIT | COMMIT | COMMIT | testdb",
		},
		"psycopg-1": {
			"BEGIN | BEGIN | BEGIN | testdb",
			"CREATE TABLE pitems | CREATE TABLE | CREATE TABLE IF NOT EXISTS pitems (id int PRIMARY KEY, name text) | testdb",
			"INSERT pitems | INSERT | INSERT INTO pitems (id, name) VALUES (?, ?) | testdb",
			"SELECT pitems | SELECT | SELECT name FROM pitems WHERE id IN (?) | testdb | rows 1",
			"COMMIT | COMMIT | COMMIT | testdb",
			"BEGIN | BEGIN | BEGIN | testdb",
			"SELECT | SELECT | SELECT ? | testdb | rows 1",
			"SELECT | SELECT | SELECT ? | testdb | rows 1",
			"UPDATE pitems | UPDATE | UPDATE pitems SET name = name WHERE id = ? | testdb",
			"COMMIT | COMMIT | COMMIT | testdb",
			"BEGIN | BEGIN | BEGIN | testdb",
			"SELECT missing_table | SELECT | SELECT * FROM missing_table WHERE secret = ? | testdb | error 42P01 42P01",
			"ROLLBACK | ROLLBACK | ROLLBACK | testdb",
			"BEGIN | BEGIN | BEGIN | testdb",
			"DO | DO | DO ? | testdb",
			"COMMIT | COMMIT | COMMIT | testdb",
			"BEGIN | BEGIN | BEGIN | testdb",
			"COPY pitems | COPY | COPY pitems FROM STDIN | testdb",
			"COPY pitems | COPY | COPY pitems TO STDOUT | testdb | rows 3",
			"COMMIT | COMMIT | COMMIT | testdb",
		},
		"pgx-1": pgx(50),
	}
	dbtest.CheckCaptures(t, cases, newDecoder)
}

// TestCapturesCapped replays the captures as the sockets collector sees
// them: 4096 bytes from the start of each read and 128 from its end. pgx
// writes its pipeline of 50 Executes in one write of 4655 bytes: the
// Executes in the uncaptured middle are lost (one loss counted), the
// decoder finds its footing again at the Sync and the rest is exact.
func TestCapturesCapped(t *testing.T) {
	dbtest.CheckCapturesCapped(t, newDecoder, map[string]func([]string) []string{
		"pgx-1": func(full []string) []string {
			i := slices.Index(full, "SELECT gitems | SELECT | SELECT name FROM gitems WHERE id = $1 | testdb | rows 1")
			return slices.Delete(full, i, i+6) // 44 of the 50 were captured
		},
	}, 1)
}

func newDecoder(stats *db.Stats, role protocol.Role, h protocol.Handler) protocol.Decoder {
	return New(stats).NewDecoder(role, h)
}
