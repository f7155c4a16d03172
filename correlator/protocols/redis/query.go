package redis

import (
	"strings"
	"unicode/utf8"
	"unsafe"
)

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

// subscribes are the commands that put a connection in pub/sub mode: they
// make no span, and neither do the messages pushed after them.
var subscribes = setOf(`SUBSCRIBE PSUBSCRIBE SSUBSCRIBE UNSUBSCRIBE PUNSUBSCRIBE SUNSUBSCRIBE`)

// pushKinds are the first elements of RESP2 pub/sub pushes.
var pushKinds = setOf(`message pmessage smessage subscribe psubscribe ssubscribe unsubscribe punsubscribe
	sunsubscribe`)

// argKind is what a command's first argument is, for db.query.text.
type argKind uint8

const (
	argValue argKind = iota // replaced by "?"
	argKey                  // kept
	argSub                  // a subcommand: kept upper-case when a plain word
	argProc                 // a script digest or function name: kept, also as db.stored_procedure.name
)

// command is what the decoder knows of a command by its name.
type command struct {
	name      string // upper-case: the one string every span of it shares
	arg       argKind
	subscribe bool
}

// commands are the known commands by upper-case name. Looking a name up
// here interns it: a command's name is not a new string per command.
var commands = commandTable()

func commandTable() map[string]*command {
	m := map[string]*command{}
	add := func(set map[string]bool, arg argKind, subscribe bool) {
		for name := range set {
			if m[name] == nil || arg != argValue {
				m[name] = &command{name: name, arg: arg, subscribe: subscribe}
			}
		}
	}
	add(noKey, argValue, false)
	add(subscribes, argValue, true)
	add(keyed, argKey, false)
	add(subcommands, argSub, false) // OBJECT: a container, not a key
	add(procedures, argProc, false)
	return m
}

// lookup returns the command named name (any case), from the table when
// it is known, else a new one that keeps only its name.
func lookup(name []byte) *command {
	var buf [keepName]byte
	up := upper(buf[:0], name[:min(len(name), keepName)])
	if c := commands[string(up)]; c != nil { // no allocation: the compiler looks up the bytes
		return c
	}
	return &command{name: strings.ToValidUTF8(string(up), "\uFFFD")}
}

// upper appends p upper-cased (ASCII: Redis names commands so) to dst.
func upper(dst, p []byte) []byte {
	for _, c := range p {
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// queryText returns the db.query.text of command c with n arguments ("SET
// key ? ?") and, for script calls, the script's digest or function name.
// The text is carved from ts: no allocation of its own.
func queryText(ts *texts, c *command, first []byte, n int) (text, procedure string) {
	rest := n - 1
	arg := c.arg
	if arg == argSub && !isWord(first) || rest <= 0 {
		arg = argValue
	}
	if arg == argKey || arg == argProc {
		if !utf8.Valid(first) {
			first = []byte(strings.ToValidUTF8(string(first), "\uFFFD"))
		}
	}
	size := len(c.name) + 2*rest
	if arg != argValue {
		size += len(first) + 1 - 2
		rest--
	}
	if size == len(c.name) {
		return c.name, ""
	}
	b := append(ts.reserve(size), c.name...)
	switch arg {
	case argSub:
		b = upper(append(b, ' '), first)
	case argKey, argProc:
		b = append(append(b, ' '), first...)
	}
	if arg == argProc {
		procedure = ts.string(b[len(c.name)+1:])
	}
	for ; rest > 0; rest-- {
		b = append(b, " ?"...)
	}
	return ts.string(b), procedure
}

// textChunk is the size of the buffers query texts are carved from.
const textChunk = 4096

// texts hands out the query texts of a connection from buffers of
// textChunk bytes: one allocation per buffer instead of one per command.
// A buffer lives while a string carved from it does (the spans being
// exported); bytes handed out are never written again.
type texts struct{ buf []byte }

// reserve returns an empty slice with room for exactly size bytes, that
// no one else is given.
func (t *texts) reserve(size int) []byte {
	if size > textChunk/8 {
		return make([]byte, 0, size)
	}
	if cap(t.buf)-len(t.buf) < size {
		t.buf = make([]byte, 0, textChunk)
	}
	start := len(t.buf)
	t.buf = t.buf[:start+size]
	return t.buf[start : start : start+size]
}

// string returns b, filled by its reserver, as a string sharing its bytes.
func (*texts) string(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
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
