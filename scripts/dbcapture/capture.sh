#!/usr/bin/env bash
# scripts/dbcapture/capture.sh — record what real PostgreSQL, MariaDB and
# Redis servers and real clients send each other, for the decoders' replay
# tests (correlator/protocols/{postgres,mysql,redis}/testdata/*.capture).
#
# Starts the three servers as root on loopback ports with private data
# directories (DESIGN.md §8), puts scripts/dbcapture/proxy in front of each,
# runs the workloads (psql, mariadb, redis-cli, pyclients.py, goclients) and
# stops everything. Not part of the unit tests: run it by hand after a change
# of workload, then commit the captures. Needs scripts/deps.sh's database
# packages and the Go module proxy (goclients).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
export PATH="$PATH:/usr/lib/postgresql/15/bin:/usr/sbin"
tmp=$(mktemp -d /tmp/dbcapture.XXXXXX)
chmod 755 "$tmp"
pids=()
cleanup() {
	set +e
	[ -f "$tmp/pg/postmaster.pid" ] && su postgres -c "pg_ctl -D $tmp/pg -m immediate stop" >/dev/null 2>&1
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

PGPORT=25432 MYPORT=23306 RDPORT=26379
PGPASS=planted-pg-password MYPASS=planted-my-password RDPASS=planted-redis-password

go build -o "$tmp/proxy" ./scripts/dbcapture/proxy
(cd scripts/dbcapture/goclients && go build -o "$tmp/goclients" .)

# PostgreSQL: cleartext password authentication on TCP, so that the capture
# holds a PasswordMessage the decoder must never export.
mkdir -p "$tmp/pg" "$tmp/pgsock" && chown postgres "$tmp/pg" "$tmp/pgsock"
su postgres -c "initdb -D $tmp/pg -A trust" >/dev/null
echo "host all all 127.0.0.1/32 password" > "$tmp/hba" && cp "$tmp/hba" "$tmp/pg/pg_hba.conf"
echo "local all all trust" >> "$tmp/pg/pg_hba.conf"
su postgres -c "pg_ctl -D $tmp/pg -l $tmp/pg/log -w -o '-c listen_addresses=127.0.0.1 -p $PGPORT -k $tmp/pgsock' start" >/dev/null
su postgres -c "psql -h $tmp/pgsock -p $PGPORT -d postgres -q -c \"CREATE USER app PASSWORD '$PGPASS'\" -c \"CREATE DATABASE testdb OWNER app\""

# MariaDB.
mariadb-install-db --datadir="$tmp/my" --user=root --auth-root-authentication-method=socket >/dev/null
mariadbd --datadir="$tmp/my" --socket="$tmp/my.sock" --port=$MYPORT --bind-address=127.0.0.1 --user=root \
	--skip-name-resolve --log-error="$tmp/my.log" &
pids+=($!)
for _ in $(seq 50); do [ -S "$tmp/my.sock" ] && break; sleep 0.2; done
mariadb --socket="$tmp/my.sock" -e "CREATE DATABASE testdb; CREATE USER 'app'@'%' IDENTIFIED BY '$MYPASS'; GRANT ALL ON *.* TO 'app'@'%';"

# Redis.
redis-server --port $RDPORT --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" --requirepass "$RDPASS" >/dev/null &
pids+=($!)
for _ in $(seq 50); do redis-cli -p $RDPORT -a "$RDPASS" --no-auth-warning ping >/dev/null 2>&1 && break; sleep 0.2; done

# record NAME SYSTEM-PORT COMMAND...: run COMMAND against the proxy's port
# (the word PORT in it is replaced) and move the captures into testdata.
record() {
	local name=$1 port=$2 dir=$3
	shift 3
	local out="$tmp/$name"
	"$tmp/proxy" -listen 127.0.0.1:0 -to 127.0.0.1:$port -out "$out" -idle 2s > "$tmp/addr" &
	local proxy=$!
	for _ in $(seq 50); do [ -s "$tmp/addr" ] && break; sleep 0.1; done
	local pport
	pport=$(cut -d: -f2 < "$tmp/addr")
	"${@//PORT/$pport}" || echo "capture.sh: $name exited $? (expected for workloads with a failing statement)"
	wait $proxy
	mkdir -p "$repo/correlator/protocols/$dir/testdata"
	for f in "$out"-*.capture; do mv "$f" "$repo/correlator/protocols/$dir/testdata/$(basename "$f")"; done
}

rm -f correlator/protocols/{postgres,mysql,redis}/testdata/*.capture
export PGPASSWORD=$PGPASS
record psql $PGPORT postgres psql -X -q -h 127.0.0.1 -p PORT -U app -d testdb \
	-c "CREATE TABLE t (id int, secret text)" \
	-c "INSERT INTO t VALUES (1, 'planted-psql-literal'), (2, E'planted-psql-\\'esc'); SELECT * FROM t WHERE id IN (1, 2); SELECT 3" \
	-c "SELECT 1; SELECT * FROM nope WHERE s = 'planted-psql-bad'; SELECT 3"
record psql-copy $PGPORT postgres psql -X -q -h 127.0.0.1 -p PORT -U app -d testdb \
	-c "\\copy t FROM '$repo/scripts/dbcapture/copy.tsv'" -c "\\copy t TO '/dev/null'" -c "BEGIN; DELETE FROM t WHERE id = 42; COMMIT"
record psycopg $PGPORT postgres /usr/bin/python3 scripts/dbcapture/pyclients.py psycopg PORT "$PGPASS"
record pgx $PGPORT postgres "$tmp/goclients" -system pgx -addr 127.0.0.1:PORT -password "$PGPASS"
record mariadb $MYPORT mysql mariadb -h 127.0.0.1 -P PORT -u app -p"$MYPASS" testdb -e \
	"CREATE TABLE t (id int, secret varchar(64)); INSERT INTO t VALUES (1, 'planted-cli-literal'); SELECT * FROM t; SELECT * FROM nope"
record pymysql $MYPORT mysql /usr/bin/python3 scripts/dbcapture/pyclients.py pymysql PORT "$MYPASS"
record gomysql $MYPORT mysql "$tmp/goclients" -system mysql -addr 127.0.0.1:PORT -password "$MYPASS"
record redis-cli $RDPORT redis redis-cli -p PORT -a "$RDPASS" --no-auth-warning SET clikey planted-cli-value
record redis-py $RDPORT redis /usr/bin/python3 scripts/dbcapture/pyclients.py redis PORT "$RDPASS"
record goredis $RDPORT redis "$tmp/goclients" -system redis -addr 127.0.0.1:PORT -password "$RDPASS"
echo "captures:" && ls correlator/protocols/{postgres,mysql,redis}/testdata/*.capture
