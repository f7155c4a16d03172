package symbols

import (
	"debug/dwarf"
	"errors"
	"fmt"
	"reflect"
	"runtime/debug"
	"sort"
	"strings"
)

// Absent is the offset of a field that the binary's Go version does not
// have (Request.Pattern before Go 1.23; only fields tagged optional), or,
// read from DWARF alone, of a field of a struct the program does not use at
// all (a server that makes no client calls has no persistConn). A collector
// checks the fields it needs.
const Absent = -1

// Offsets are the byte offsets, within their structs, of the fields the Go
// collector reads from a traced program's memory. Each field's tag names
// the struct and field as DWARF does: `go:"net/http.Request,Method"`, with
// ",optional" for fields that some supported Go versions lack.
//
// Strings are {ptr, len}, slices {ptr, len, cap}, interfaces {itab, data}.
type Offsets struct {
	// net/http.Request: the server's incoming and the client's outgoing request.
	RequestMethod        int64 `go:"net/http.Request,Method"`           // string
	RequestURL           int64 `go:"net/http.Request,URL"`              // *url.URL
	RequestProtoMajor    int64 `go:"net/http.Request,ProtoMajor"`       // int
	RequestProtoMinor    int64 `go:"net/http.Request,ProtoMinor"`       // int
	RequestHeader        int64 `go:"net/http.Request,Header"`           // map[string][]string
	RequestContentLength int64 `go:"net/http.Request,ContentLength"`    // int64
	RequestHost          int64 `go:"net/http.Request,Host"`             // string
	RequestRemoteAddr    int64 `go:"net/http.Request,RemoteAddr"`       // string, "ip:port" (server side)
	RequestRequestURI    int64 `go:"net/http.Request,RequestURI"`       // string (server side)
	RequestPattern       int64 `go:"net/http.Request,Pattern,optional"` // string, the ServeMux route (Go ≥ 1.23)
	RequestTLS           int64 `go:"net/http.Request,TLS"`              // *tls.ConnectionState, nil for plain HTTP (server side)

	// net/url.URL. Go 1.26 moved RawQuery before RawPath.
	URLScheme   int64 `go:"net/url.URL,Scheme"`   // string
	URLHost     int64 `go:"net/url.URL,Host"`     // string
	URLPath     int64 `go:"net/url.URL,Path"`     // string
	URLRawPath  int64 `go:"net/url.URL,RawPath"`  // string
	URLRawQuery int64 `go:"net/url.URL,RawQuery"` // string

	// net/http.response: the server's ResponseWriter, the receiver of
	// (*response).finishRequest. Changed within a minor release: go1.26.11
	// (and 1.27) made reqBody a *body, moving the fields after it.
	ResponseConn          int64 `go:"net/http.response,conn"`          // *conn
	ResponseReq           int64 `go:"net/http.response,req"`           // *Request
	ResponseWroteHeader   int64 `go:"net/http.response,wroteHeader"`   // bool
	ResponseWritten       int64 `go:"net/http.response,written"`       // int64, body bytes written
	ResponseContentLength int64 `go:"net/http.response,contentLength"` // int64, declared or -1
	ResponseStatus        int64 `go:"net/http.response,status"`        // int, 0 until WriteHeader

	// net/http.conn: the server's connection.
	ConnRWC        int64 `go:"net/http.conn,rwc"`        // net.Conn
	ConnRemoteAddr int64 `go:"net/http.conn,remoteAddr"` // string
	ConnTLSState   int64 `go:"net/http.conn,tlsState"`   // *tls.ConnectionState, nil for plain HTTP

	// net/http.Response: what the client's roundTrip returns.
	ClientResponseStatusCode    int64 `go:"net/http.Response,StatusCode"`    // int
	ClientResponseContentLength int64 `go:"net/http.Response,ContentLength"` // int64
	ClientResponseRequest       int64 `go:"net/http.Response,Request"`       // *Request

	// net/http.persistConn: the client's connection.
	PersistConnConn     int64 `go:"net/http.persistConn,conn"`     // net.Conn
	PersistConnTLSState int64 `go:"net/http.persistConn,tlsState"` // *tls.ConnectionState, nil for plain HTTP

	// net/http.transportRequest: the argument of (*persistConn).roundTrip,
	// which embeds the *Request.
	TransportRequestRequest int64 `go:"net/http.transportRequest,Request"` // *Request

	// HTTP/2, as net/http bundles it (h2_bundle.go, Go ≤ 1.26). The server
	// calls the handler with an *http2responseWriter, whose state holds
	// the status, the body bytes written and the connection; the client's
	// (*http2ClientConn).RoundTrip has the connection.
	H2ResponseWriterRws  int64 `go:"net/http.http2responseWriter,rws,optional"`             // *http2responseWriterState
	H2RWStateConn        int64 `go:"net/http.http2responseWriterState,conn,optional"`       // *http2serverConn
	H2RWStateStatus      int64 `go:"net/http.http2responseWriterState,status,optional"`     // int, 0 until WriteHeader
	H2RWStateWroteBytes  int64 `go:"net/http.http2responseWriterState,wroteBytes,optional"` // int64, body bytes written
	H2ServerConnConn     int64 `go:"net/http.http2serverConn,conn,optional"`                // net.Conn
	H2ClientConnTconn    int64 `go:"net/http.http2ClientConn,tconn,optional"`               // net.Conn
	H2ClientConnTLSState int64 `go:"net/http.http2ClientConn,tlsState,optional"`            // *tls.ConnectionState
	// The same server structs in net/http/internal/http2 (Go ≥ 1.27).
	H2iResponseWriterRws int64 `go:"net/http/internal/http2.responseWriter,rws,optional"`
	H2iRWStateConn       int64 `go:"net/http/internal/http2.responseWriterState,conn,optional"`
	H2iRWStateStatus     int64 `go:"net/http/internal/http2.responseWriterState,status,optional"`
	H2iRWStateWroteBytes int64 `go:"net/http/internal/http2.responseWriterState,wroteBytes,optional"`
	H2iServerConnConn    int64 `go:"net/http/internal/http2.serverConn,conn,optional"`
	// Go 1.27's HTTP/2 client: (*ClientConn).roundTrip takes a
	// *ClientRequest and returns a *ClientResponse of its own.
	H2iClientConnTconn             int64 `go:"net/http/internal/http2.ClientConn,tconn,optional"`
	H2iClientConnTLSState          int64 `go:"net/http/internal/http2.ClientConn,tlsState,optional"`
	H2iClientRequestMethod         int64 `go:"net/http/internal/http2.ClientRequest,Method,optional"`
	H2iClientRequestURL            int64 `go:"net/http/internal/http2.ClientRequest,URL,optional"`
	H2iClientRequestHost           int64 `go:"net/http/internal/http2.ClientRequest,Host,optional"`
	H2iClientRequestContentLength  int64 `go:"net/http/internal/http2.ClientRequest,ContentLength,optional"`
	H2iClientResponseStatusCode    int64 `go:"net/http/internal/http2.ClientResponse,StatusCode,optional"`
	H2iClientResponseContentLength int64 `go:"net/http/internal/http2.ClientResponse,ContentLength,optional"`

	// From a net.Conn to its file descriptor: *tls.Conn wraps a net.Conn;
	// *net.TCPConn embeds net.conn{fd *netFD}; netFD holds a poll.FD.
	TLSConnConn int64 `go:"crypto/tls.Conn,conn"`   // net.Conn
	TCPConnConn int64 `go:"net.TCPConn,conn"`       // net.conn (embedded)
	NetConnFD   int64 `go:"net.conn,fd"`            // *netFD
	NetFDPFD    int64 `go:"net.netFD,pfd"`          // poll.FD
	PollFDSysfd int64 `go:"internal/poll.FD,Sysfd"` // int

	// runtime.g: the goroutine, in R14 (amd64) or X28 (arm64).
	GGoid int64 `go:"runtime.g,goid"` // 64-bit goroutine ID

	// Request.Header, a map[string][]string, as bucket maps (runtime.hmap,
	// Go ≤ 1.23 and GOEXPERIMENT=noswissmap) lay it out: the hmap and the
	// linker's DWARF type of its buckets, bucket<string,[]string> (8 tophash
	// bytes, 8 keys, 8 values, the overflow pointer). Absent from Go ≥ 1.24.
	HmapFlags      int64 `go:"runtime.hmap,flags,optional"`               // uint8; 8: same-size growth
	HmapB          int64 `go:"runtime.hmap,B,optional"`                   // uint8, log2 of the bucket count
	HmapBuckets    int64 `go:"runtime.hmap,buckets,optional"`             // *bucket
	HmapOldbuckets int64 `go:"runtime.hmap,oldbuckets,optional"`          // *bucket, non-nil while growing
	BucketTophash  int64 `go:"bucket<string,[]string>,tophash,optional"`  // [8]uint8
	BucketKeys     int64 `go:"bucket<string,[]string>,keys,optional"`     // [8]string
	BucketValues   int64 `go:"bucket<string,[]string>,values,optional"`   // [8][]string
	BucketOverflow int64 `go:"bucket<string,[]string>,overflow,optional"` // *bucket
	BucketSize     int64 `go:"bucket<string,[]string>,#size,optional"`    // bytes of one bucket
	// The same map as swiss tables (internal/runtime/maps, Go ≥ 1.24): a
	// Map whose dirPtr is one group when dirLen is 0, else an array of
	// dirLen *table (a table may fill several consecutive entries), each
	// table an array of lengthMask+1 groups; a group is a control word (one
	// byte per slot, high bit clear when the slot is full) and 8 slots of
	// {key string, elem []string}. Absent before Go 1.24.
	SwissMapDirPtr        int64 `go:"internal/runtime/maps.Map,dirPtr,optional"`                 // unsafe.Pointer
	SwissMapDirLen        int64 `go:"internal/runtime/maps.Map,dirLen,optional"`                 // int
	SwissTableGroups      int64 `go:"internal/runtime/maps.table,groups,optional"`               // groupsReference
	SwissGroupsData       int64 `go:"internal/runtime/maps.groupsReference,data,optional"`       // unsafe.Pointer
	SwissGroupsLengthMask int64 `go:"internal/runtime/maps.groupsReference,lengthMask,optional"` // uint64
	SwissGroupCtrl        int64 `go:"noalg.map.group[string][]string,ctrl,optional"`             // uint64, 8 control bytes
	SwissGroupSlots       int64 `go:"noalg.map.group[string][]string,slots,optional"`            // [8]struct{key string; elem []string}
	SwissGroupSize        int64 `go:"noalg.map.group[string][]string,#size,optional"`            // bytes of one group
}

// SizeField is the pseudo field name of an Offsets tag that stands for the
// byte size of the struct itself rather than a member's offset.
const SizeField = "#size"

// OffsetField names one field of Offsets: Struct and Field as DWARF names
// them, and whether a supported Go version may lack it.
type OffsetField struct {
	Name     string // the Offsets field: "RequestMethod"
	Struct   string // "net/http.Request"
	Field    string // "Method"
	Optional bool
}

// OffsetFields lists the fields of Offsets in declaration order.
func OffsetFields() []OffsetField {
	t := reflect.TypeOf(Offsets{})
	out := make([]OffsetField, 0, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		// Struct names may contain commas (bucket<string,[]string>):
		// the field is after the last comma but for ",optional".
		tag, optional := strings.CutSuffix(sf.Tag.Get("go"), ",optional")
		i := strings.LastIndexByte(tag, ',')
		out = append(out, OffsetField{Name: sf.Name, Struct: tag[:i], Field: tag[i+1:], Optional: optional})
	}
	return out
}

// Get returns the offset of the named field (an Offsets field name).
func (o Offsets) Get(name string) int64 {
	return reflect.ValueOf(o).FieldByName(name).Int()
}

// set sets the named field.
func (o *Offsets) set(name string, v int64) {
	reflect.ValueOf(o).Elem().FieldByName(name).SetInt(v)
}

// ErrNoOffsets is returned (wrapped) when a binary has no DWARF and its Go
// version is not in the table.
var ErrNoOffsets = errors.New("no struct offsets for this Go version")

// OffsetsSource says where a binary's offsets were read.
type OffsetsSource string

// The sources of offsets.
const (
	FromTable OffsetsSource = "table"
	FromDWARF OffsetsSource = "DWARF"
)

// Offsets returns the struct field offsets for this binary (see
// OffsetsWithSource).
func (b *GoBinary) Offsets() (Offsets, error) {
	o, _, err := b.OffsetsWithSource()
	return o, err
}

// OffsetsWithSource returns the struct field offsets for this binary and
// where they came from. The table embedded in Periscope answers for the
// releases it was generated from: it is read from the DWARF of those very
// toolchains and costs nothing, where reading a binary's DWARF costs
// hundreds of milliseconds and tens of megabytes. The binary's DWARF is
// read when the table does not vouch for the release (a patch release newer
// than those the table was made from, a development build, a build with a
// GOEXPERIMENT, which may change layouts), with the fields of structs the
// program does not use taken from the table where it knows the minor
// release; without DWARF, the table answers for its minor releases.
func (b *GoBinary) OffsetsWithSource() (Offsets, OffsetsSource, error) {
	if tableVouches(b.Version, b.GoVersionRaw, b.Build) || !b.HasDWARF {
		o, err := TableOffsets(b.Version)
		if err == nil {
			return o, FromTable, nil
		}
		if !b.HasDWARF {
			return Offsets{}, "", fmt.Errorf("offsets for %s (no DWARF): %w", b.Path, err)
		}
	}
	o, dwarfErr := b.OffsetsDWARF()
	if dwarfErr == nil {
		if t, err := TableOffsets(b.Version); err == nil {
			for _, f := range OffsetFields() {
				if o.Get(f.Name) == Absent {
					o.set(f.Name, t.Get(f.Name))
				}
			}
		}
		return o, FromDWARF, nil
	}
	o, err := TableOffsets(b.Version)
	if err != nil {
		return Offsets{}, "", fmt.Errorf("offsets for %s: %w; %w", b.Path, dwarfErr, err)
	}
	return o, FromTable, nil
}

// tableVouches tells whether the embedded table was made from v's exact
// layout: a release no newer than the newest the table's rows for its
// minor release were read from, of a plain build (not a development
// toolchain, no GOEXPERIMENT).
func tableVouches(v GoVersion, raw string, bi *debug.BuildInfo) bool {
	if strings.Contains(raw, "devel") || strings.Contains(raw, "X:") {
		return false
	}
	if bi != nil {
		for _, s := range bi.Settings {
			if s.Key == "GOEXPERIMENT" && s.Value != "" {
				return false
			}
		}
	}
	for _, e := range OffsetsTable() {
		for _, tc := range e.Toolchains {
			t, err := ParseGoVersion(tc)
			if err == nil && t.Major == v.Major && t.Minor == v.Minor && !t.Less(v) {
				return true
			}
		}
	}
	return false
}

// OffsetsDWARF reads the offsets from the binary's DWARF alone. It fails
// when the binary has no DWARF, or when a struct it describes lacks a
// required field (the layout changed: offsets are never guessed).
func (b *GoBinary) OffsetsDWARF() (Offsets, error) {
	if n := dwarfBytes(b.elf); n > maxDWARFBytes {
		return Offsets{}, fmt.Errorf("DWARF of %s: %d bytes of debug sections: %w", b.Path, n, ErrTooLarge)
	}
	d, err := b.elf.DWARF()
	if err != nil {
		return Offsets{}, fmt.Errorf("read DWARF of %s: %w", b.Path, err)
	}
	o, err := OffsetsFromDWARF(d)
	if err != nil {
		return Offsets{}, fmt.Errorf("offsets from DWARF of %s: %w", b.Path, err)
	}
	return o, nil
}

// OffsetsFromDWARF reads the offsets from DWARF data. The fields of
// structs the DWARF does not describe are Absent, as are optional fields
// that a described struct lacks; required fields that a described struct
// lacks are an error naming them all.
func OffsetsFromDWARF(d *dwarf.Data) (Offsets, error) {
	fields := OffsetFields()
	want := map[string]map[string]int64{} // struct → field → offset (Absent until found)
	for _, f := range fields {
		if want[f.Struct] == nil {
			want[f.Struct] = map[string]int64{}
		}
		want[f.Struct][f.Field] = Absent
	}
	found, err := readStructOffsets(d, want)
	if err != nil {
		return Offsets{}, err
	}
	var o Offsets
	var missing []string
	for _, f := range fields {
		v := want[f.Struct][f.Field]
		if v == Absent && !f.Optional && found[f.Struct] {
			missing = append(missing, f.Struct+"."+f.Field)
		}
		o.set(f.Name, v)
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return Offsets{}, fmt.Errorf("DWARF lacks %s", strings.Join(missing, ", "))
	}
	return o, nil
}

// mapLayouts are the structs of the two layouts of Go maps: a binary has
// one or the other, so the search for struct offsets ends when every other
// struct and one layout's are found rather than reading all of the DWARF.
var mapLayouts = [][]string{
	{"runtime.hmap", "bucket<string,[]string>"},
	{"internal/runtime/maps.Map", "internal/runtime/maps.table", "internal/runtime/maps.groupsReference",
		"noalg.map.group[string][]string"},
}

// allFound tells whether the search for the wanted structs may end.
func allFound(want map[string]map[string]int64, done map[string]bool) bool {
	if len(done) == len(want) {
		return true
	}
	alternative := map[string]bool{}
	layoutFound := false
	for _, layout := range mapLayouts {
		all := true
		for _, name := range layout {
			alternative[name] = true
			if _, wanted := want[name]; wanted && !done[name] {
				all = false
			}
		}
		layoutFound = layoutFound || all
	}
	if !layoutFound {
		return false
	}
	for name := range want {
		if !done[name] && !alternative[name] {
			return false
		}
	}
	return true
}

// readStructOffsets fills want[struct][field] with the offsets of the
// members of the named struct types, and returns the names of the structs
// it found. It reads only the top level of each compilation unit, where Go
// puts its types.
func readStructOffsets(d *dwarf.Data, want map[string]map[string]int64) (map[string]bool, error) {
	r := d.Reader()
	done := map[string]bool{}
	for finished := allFound(want, done); !finished; {
		e, err := r.Next()
		if err != nil {
			return nil, fmt.Errorf("read DWARF: %w", err)
		}
		if e == nil {
			break
		}
		if e.Tag == dwarf.TagCompileUnit || !e.Children {
			continue
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		fields, ok := want[name]
		if e.Tag != dwarf.TagStructType || !ok || done[name] {
			r.SkipChildren()
			continue
		}
		if _, ok := fields[SizeField]; ok {
			size, ok := e.Val(dwarf.AttrByteSize).(int64)
			if !ok {
				return nil, fmt.Errorf("DWARF struct %s has no constant size", name)
			}
			fields[SizeField] = size
		}
		for {
			m, err := r.Next()
			if err != nil {
				return nil, fmt.Errorf("read DWARF members of %s: %w", name, err)
			}
			if m == nil || m.Tag == 0 {
				break
			}
			if m.Children {
				r.SkipChildren()
			}
			if m.Tag != dwarf.TagMember {
				continue
			}
			mname, _ := m.Val(dwarf.AttrName).(string)
			if _, ok := fields[mname]; !ok {
				continue
			}
			loc, ok := m.Val(dwarf.AttrDataMemberLoc).(int64)
			if !ok {
				return nil, fmt.Errorf("DWARF member %s.%s has no constant offset", name, mname)
			}
			fields[mname] = loc
		}
		done[name] = true
		finished = allFound(want, done)
	}
	return done, nil
}
