package sqltext

import "strings"

// maxSummary is the length db.query.summary is cut to (at a token boundary),
// as the conventions ask.
const maxSummary = 255

// leading are operations recognised only as the first word of a statement.
var leading = wordSet(`BEGIN COMMIT ROLLBACK START SAVEPOINT RELEASE SET SHOW USE EXPLAIN ANALYZE VACUUM
	GRANT REVOKE LISTEN NOTIFY UNLISTEN DISCARD RESET PREPARE EXECUTE DEALLOCATE DECLARE FETCH MOVE CLOSE DO
	REFRESH REINDEX CLUSTER COMMENT DESCRIBE DESC LOAD HANDLER KILL FLUSH CHECKPOINT CALL COPY LOCK TRUNCATE
	CREATE DROP ALTER RENAME REPLACE OPTIMIZE REPAIR CHECKSUM ABORT END VALUES TABLE`)

// nested are data operations that may also start a subquery or a CTE body.
var nested = wordSet(`SELECT INSERT UPDATE DELETE MERGE`)

// objectKinds follow CREATE, DROP, ALTER and become part of the operation.
var objectKinds = wordSet(`TABLE INDEX VIEW SCHEMA DATABASE SEQUENCE FUNCTION PROCEDURE TRIGGER TYPE
	EXTENSION USER ROLE DOMAIN EVENT`)

// modifiers are skipped between an operation and its object or target.
var modifiers = wordSet(`OR REPLACE IF NOT EXISTS TEMP TEMPORARY UNLOGGED MATERIALIZED UNIQUE CONCURRENTLY
	ONLY GLOBAL LOCAL IGNORE LOW_PRIORITY HIGH_PRIORITY DELAYED QUICK DEFINER ALGORITHM SQL SECURITY`)

// notTargets are keywords that end a table list or can never name a table.
var notTargets = wordSet(`WHERE SET VALUES VALUE ON USING JOIN LEFT RIGHT INNER OUTER FULL CROSS NATURAL GROUP
	ORDER LIMIT OFFSET HAVING UNION EXCEPT INTERSECT RETURNING AS FOR WINDOW LATERAL SELECT DEFAULT STDIN STDOUT
	WITH FROM TO INTO PARTITION STRAIGHT_JOIN USE FORCE ALL DISTINCT`)

// Summary returns the db.query.summary of one sanitised statement: its
// operations and targets in the order they appear, as written.
func Summary(stmt string, d Dialect) string {
	parts, _ := analyse(stmt, d)
	return truncate(parts)
}

// Single returns the operation of a sanitised statement when it has only
// one (db.operation.name), and its collection when that operation works on
// only one (db.collection.name): the conventions ask for these two only
// when the query names a single one.
func Single(stmt string, d Dialect) (operation, collection string) {
	return single(analyse(stmt, d))
}

// Info is what the spans of one sanitised statement export.
type Info struct {
	Text       string // the statement (db.query.text)
	Operation  string // Single's operation (db.operation.name)
	Collection string // Single's collection (db.collection.name)
	Summary    string // db.query.summary
}

// Describe returns the Info of a sanitised statement: Single and Summary
// from one reading of it.
func Describe(stmt string, d Dialect) Info {
	parts, isOp := analyse(stmt, d)
	op, collection := single(parts, isOp)
	return Info{Text: stmt, Operation: op, Collection: collection, Summary: truncate(parts)}
}

func single(parts []string, isOp []bool) (operation, collection string) {
	for i, p := range parts {
		switch {
		case !isOp[i] && (collection == "" || collection == p):
			collection = p
		case !isOp[i]:
			return operation, ""
		case operation == "":
			operation = p
		default:
			return "", ""
		}
	}
	return operation, collection
}

// analyse returns the operations and targets of a statement in the order
// they appear, and which of them are operations.
func analyse(stmt string, d Dialect) (parts []string, isOp []bool) {
	toks := tokens(stmt, d)
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		up := strings.ToUpper(t)
		from, op := len(parts), len(parts)
		switch {
		case i == 0 && (leading[up] || nested[up]):
			parts, i = statementOp(toks, parts)
		case nested[up] && nestable(toks, i):
			parts = append(parts, t)
			if up == "UPDATE" {
				parts, i = appendTargets(toks, i+1, parts, false)
			}
		case (up == "FROM" || up == "INTO" || up == "JOIN") && len(parts) > 0 && !inCall(toks, i):
			parts, i = appendTargets(toks, i+1, parts, up == "FROM")
			op = -1 // targets only
		}
		for j := from; j < len(parts); j++ {
			isOp = append(isOp, j == op) // an operation, then its targets
		}
	}
	return parts, isOp
}

// statementOp handles the operation that starts a statement and returns the
// index of the last token it used.
func statementOp(toks, parts []string) ([]string, int) {
	op := toks[0]
	up := strings.ToUpper(op)
	i := 1
	switch up {
	case "CREATE", "DROP", "ALTER", "TRUNCATE", "LOCK":
		i = skip(toks, i, modifiers)
		if i < len(toks) && objectKinds[strings.ToUpper(toks[i])] {
			op += " " + toks[i]
			i++
		}
		i = skip(toks, i, modifiers)
		parts = append(parts, op)
		return appendTargets(toks, i, parts, up == "TRUNCATE" || up == "DROP")
	case "UPDATE", "COPY", "CALL", "USE", "DESCRIBE", "DESC", "TABLE", "REFRESH", "VACUUM", "ANALYZE":
		parts = append(parts, op)
		i = skip(toks, i, modifiers)
		return appendTargets(toks, i, parts, false)
	case "START":
		if i < len(toks) && strings.EqualFold(toks[i], "TRANSACTION") {
			return append(parts, op+" "+toks[i]), i
		}
	}
	return append(parts, op), 0
}

// appendTargets appends the table names that start at toks[i]: one, or a
// comma-separated list (with aliases) when list is set. It returns the index
// of the last token used.
func appendTargets(toks []string, i int, parts []string, list bool) ([]string, int) {
	i = skip(toks, i, modifiers)
	if i < len(toks) && strings.EqualFold(toks[i], "TABLE") {
		i++ // INTO TABLE t (MySQL's LOAD DATA)
	}
	for i < len(toks) {
		name, j, ok := qualifiedName(toks, i)
		if !ok {
			return parts, i - 1
		}
		parts = append(parts, name)
		i = j
		if !list {
			return parts, i - 1
		}
		// skip an alias: [AS] word
		if i < len(toks) && strings.EqualFold(toks[i], "AS") {
			i++
		}
		if i < len(toks) && isName(toks[i]) {
			i++
		}
		if i >= len(toks) || toks[i] != "," {
			return parts, i - 1
		}
		i++
	}
	return parts, i - 1
}

// qualifiedName reads name(.name)* at toks[i].
func qualifiedName(toks []string, i int) (string, int, bool) {
	if i >= len(toks) || !isName(toks[i]) {
		return "", i, false
	}
	name := toks[i]
	i++
	for i+1 < len(toks) && toks[i] == "." && (isName(toks[i+1]) || isQuoted(toks[i+1])) {
		name += "." + toks[i+1]
		i += 2
	}
	return name, i, true
}

func isName(t string) bool {
	if isQuoted(t) {
		return true
	}
	if t == "" || !isIdentStart(t[0]) {
		return false
	}
	return !notTargets[strings.ToUpper(t)] && !nested[strings.ToUpper(t)]
}

func isQuoted(t string) bool { return len(t) >= 2 && (t[0] == '"' || t[0] == '`') }

// nestable reports whether the data operation at toks[i] starts a
// statement of its own: after "(" or ")" (a subquery, a CTE body, INSERT
// ... (cols) SELECT), after a table name (INSERT INTO t SELECT), or, for
// SELECT, anywhere (UNION SELECT).
func nestable(toks []string, i int) bool {
	if strings.EqualFold(toks[i], "SELECT") {
		return true
	}
	p := toks[i-1]
	return p == "(" || p == ")" || strings.EqualFold(p, "AS")
}

// inCall reports whether toks[i] is inside the parentheses of a function
// call (EXTRACT(YEAR FROM ts), SUBSTRING(s FROM ?)).
func inCall(toks []string, i int) bool {
	depth := 0
	for j := i - 1; j >= 0; j-- {
		switch toks[j] {
		case ")":
			depth++
		case "(":
			if depth == 0 {
				return j > 0 && isName(toks[j-1]) && !isQuoted(toks[j-1]) && !strings.EqualFold(toks[j-1], "IN")
			}
			depth--
		}
	}
	return false
}

func skip(toks []string, i int, set map[string]bool) int {
	for i < len(toks) && set[strings.ToUpper(toks[i])] {
		i++
	}
	return i
}

// tokens returns the significant tokens of a sanitised statement.
func tokens(s string, d Dialect) []string {
	var out []string
	for i := 0; i < len(s); {
		k, j := next(s, i, d)
		if k != kSpace && k != kComment {
			out = append(out, s[i:j])
		}
		i = j
	}
	return out
}

func truncate(parts []string) string {
	n := 0
	for i, p := range parts {
		if n+len(p)+min(i, 1) > maxSummary {
			parts = parts[:i]
			break
		}
		n += len(p) + min(i, 1)
	}
	return strings.Join(parts, " ")
}

func wordSet(s string) map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(s) {
		m[w] = true
	}
	return m
}
