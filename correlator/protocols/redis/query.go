package redis

import "strings"

// noKey are commands whose first argument is not a key: every argument is
// replaced, and for the credential-bearing ones (AUTH, HELLO ... AUTH,
// MIGRATE ... AUTH, ACL SETUSER, CONFIG SET) that is what keeps secrets in
// the agent. (Every command not in keyed is treated so; the list says it
// for the fuzz target.)
var noKey = setOf(`AUTH HELLO SELECT PING ECHO QUIT RESET MULTI EXEC DISCARD UNWATCH INFO DBSIZE TIME
	LASTSAVE SAVE BGSAVE BGREWRITEAOF FLUSHDB FLUSHALL SWAPDB MONITOR ROLE REPLICAOF SLAVEOF SHUTDOWN
	WAIT WAITAOF PUBLISH SPUBLISH SCAN RANDOMKEY KEYS EVAL EVAL_RO MIGRATE FAILOVER LOLWUT READONLY READWRITE
	ASKING SYNC PSYNC REPLCONF`)

// keyed are the commands whose first argument is a key, kept in
// db.query.text. Any other command (a module's, a misspelt one, one newer
// than this table) keeps only its name: an argument of a command the agent
// does not know may be a value.
var keyed = setOf(`GET SET SETNX SETEX PSETEX GETSET GETDEL GETEX GETRANGE SETRANGE APPEND STRLEN INCR INCRBY
	INCRBYFLOAT DECR DECRBY MGET MSET MSETNX DEL UNLINK EXISTS EXPIRE PEXPIRE EXPIREAT PEXPIREAT EXPIRETIME
	PEXPIRETIME TTL PTTL PERSIST TYPE RENAME RENAMENX COPY DUMP RESTORE TOUCH SORT SORT_RO MOVE OBJECT
	HGET HSET HSETNX HMGET HMSET HDEL HEXISTS HGETALL HINCRBY HINCRBYFLOAT HKEYS HVALS HLEN HSTRLEN HSCAN
	HRANDFIELD LPUSH RPUSH LPUSHX RPUSHX LPOP RPOP LLEN LRANGE LINDEX LSET LINSERT LREM LTRIM LPOS LMOVE
	RPOPLPUSH BLPOP BRPOP BLMOVE BRPOPLPUSH LMPOP BLMPOP SADD SREM SMEMBERS SISMEMBER SMISMEMBER SCARD SPOP
	SRANDMEMBER SMOVE SINTER SINTERSTORE SINTERCARD SUNION SUNIONSTORE SDIFF SDIFFSTORE SSCAN ZADD ZREM
	ZSCORE ZMSCORE ZINCRBY ZCARD ZCOUNT ZLEXCOUNT ZRANGE ZRANGESTORE ZRANGEBYSCORE ZRANGEBYLEX ZREVRANGE
	ZREVRANGEBYSCORE ZREVRANGEBYLEX ZRANK ZREVRANK ZREMRANGEBYRANK ZREMRANGEBYSCORE ZREMRANGEBYLEX ZPOPMIN
	ZPOPMAX BZPOPMIN BZPOPMAX ZRANDMEMBER ZSCAN ZUNION ZUNIONSTORE ZINTER ZINTERSTORE ZINTERCARD ZDIFF
	ZDIFFSTORE ZMPOP BZMPOP XADD XRANGE XREVRANGE XLEN XDEL XTRIM XACK XCLAIM XAUTOCLAIM XPENDING XSETID
	PFADD PFCOUNT PFMERGE SETBIT GETBIT BITCOUNT BITPOS BITFIELD BITFIELD_RO GEOADD GEODIST GEOHASH GEOPOS
	GEORADIUS GEORADIUS_RO GEORADIUSBYMEMBER GEORADIUSBYMEMBER_RO GEOSEARCH GEOSEARCHSTORE WATCH LCS
	SUBSTR`)

// subcommands are container commands: their first argument names a
// subcommand, kept when it is a plain word; everything after it is
// replaced.
var subcommands = setOf(`CONFIG CLIENT CLUSTER ACL OBJECT MEMORY SCRIPT FUNCTION XINFO XGROUP COMMAND DEBUG
	MODULE LATENCY SLOWLOG PUBSUB`)

// procedures name a script or function in their first argument.
var procedures = setOf(`EVALSHA EVALSHA_RO FCALL FCALL_RO`)

// queryText returns the db.query.text of a command of n arguments ("SET
// key ? ?") and, for script calls, the script's digest or function name.
func queryText(name string, first []byte, n int) (text, procedure string) {
	var b strings.Builder
	b.WriteString(name)
	rest := n - 1
	switch {
	case rest <= 0:
	case subcommands[name] && isWord(first):
		b.WriteByte(' ')
		b.WriteString(strings.ToUpper(string(first)))
		rest--
	case procedures[name]:
		procedure = strings.ToValidUTF8(string(first), "\uFFFD")
		b.WriteByte(' ')
		b.WriteString(procedure)
		rest--
	case keyed[name]:
		b.WriteByte(' ')
		b.WriteString(strings.ToValidUTF8(string(first), "\uFFFD"))
		rest--
	}
	for ; rest > 0; rest-- {
		b.WriteString(" ?")
	}
	return b.String(), procedure
}

func isWord(p []byte) bool {
	if len(p) == 0 || len(p) > 20 {
		return false
	}
	for _, c := range p {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func setOf(s string) map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(s) {
		m[w] = true
	}
	return m
}
