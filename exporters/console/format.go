package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/periscope-apm/periscope/span"
)

// Attribute keys the text format shows in their own columns or fields
// (OpenTelemetry HTTP semantic conventions).
const (
	keyMethod      = "http.request.method"
	keyPath        = "url.path"
	keyRoute       = "http.route"
	keyStatusCode  = "http.response.status_code"
	keyRPCStatus   = "rpc.response.status_code" // RPC semantic conventions
	keyPeerAddr    = "network.peer.address"
	keyPeerPort    = "network.peer.port"
	keyClientAddr  = "client.address"
	keyClientPort  = "client.port"
	keyServerAddr  = "server.address"
	keyServerPort  = "server.port"
	keyServiceName = "service.name"
)

// Column widths of the text format. Longer values push the following
// columns right rather than being cut.
const (
	widthKind     = 6
	widthService  = 24
	widthName     = 32
	widthStatus   = 3
	widthDuration = 11
)

// appendText appends one line like
//
//	12:01:02.345 SERVER nginx[4242]              GET /index.html                  200    1.234ms trace=4bf9… span=00f0… parent=- peer=127.0.0.1:51234
//
// The time is the span's start in the location it carries. After the fixed
// columns come key=value fields: IDs, the peer (servers) or server (clients),
// the raw path when it differs from the route, the status when it is ERROR,
// the number of events, then every other attribute in span order.
func appendText(b []byte, s *span.Span) ([]byte, error) {
	b = s.Start.AppendFormat(b, "15:04:05.000")
	b = append(b, ' ')
	b = appendPadded(b, strings.ToUpper(s.Kind.String()), widthKind, false)
	b = append(b, ' ')
	b = appendPadded(b, serviceLabel(s.Process), widthService, false)
	b = append(b, ' ')
	b = appendPadded(b, s.Name, widthName, false)
	b = append(b, ' ')

	attrs := attrIndex(s.Attributes)
	code := "-"
	if v, ok := attrs[keyStatusCode]; ok {
		code = v.Emit()
	} else if v, ok := attrs[keyRPCStatus]; ok {
		code = v.Emit()
	}
	b = appendPadded(b, code, widthStatus, false)
	b = append(b, ' ')
	b = appendPadded(b, formatDuration(s.End.Sub(s.Start)), widthDuration, true)

	b = append(b, " trace="...)
	b = append(b, s.TraceID.String()...)
	b = append(b, " span="...)
	b = append(b, s.SpanID.String()...)
	b = append(b, " parent="...)
	if s.ParentSpanID.IsValid() {
		b = append(b, s.ParentSpanID.String()...)
		if s.RemoteParent {
			b = append(b, "(remote)"...)
		}
	} else {
		b = append(b, '-')
	}

	shown := map[attribute.Key]bool{keyMethod: true, keyRoute: true, keyStatusCode: true, keyRPCStatus: true}
	if s.Kind == span.Client {
		if hp := hostPort(attrs, keyServerAddr, keyServerPort); hp != "" {
			b = appendField(b, "server", hp)
			shown[keyServerAddr], shown[keyServerPort] = true, true
		}
	}
	if hp := hostPort(attrs, keyPeerAddr, keyPeerPort); hp != "" {
		b = appendField(b, "peer", hp)
		shown[keyPeerAddr], shown[keyPeerPort] = true, true
	} else if hp := hostPort(attrs, keyClientAddr, keyClientPort); hp != "" {
		b = appendField(b, "peer", hp)
		shown[keyClientAddr], shown[keyClientPort] = true, true
	}
	if p, ok := attrs[keyPath]; ok {
		shown[keyPath] = true
		if r, ok := attrs[keyRoute]; !ok || r.Emit() != p.Emit() {
			b = appendField(b, "path", p.Emit())
		}
	}
	if s.Status == span.Error {
		b = appendField(b, "status", s.Status.String())
		if s.StatusMsg != "" {
			b = appendField(b, "msg", s.StatusMsg)
		}
	}
	if len(s.Events) > 0 {
		b = appendField(b, "events", strconv.Itoa(len(s.Events)))
	}
	for _, kv := range s.Attributes {
		if shown[kv.Key] {
			continue
		}
		b = appendField(b, string(kv.Key), kv.Value.Emit())
	}
	return append(b, '\n'), nil
}

// appendField appends " key=value", quoting value when it is empty or holds
// spaces, quotes or control characters, so that lines stay parseable.
func appendField(b []byte, key, value string) []byte {
	b = append(b, ' ')
	b = append(b, key...)
	b = append(b, '=')
	if value == "" || strings.ContainsFunc(value, func(r rune) bool {
		return r <= ' ' || r == '"' || r == 0x7f
	}) {
		return strconv.AppendQuote(b, value)
	}
	return append(b, value...)
}

func appendPadded(b []byte, s string, width int, right bool) []byte {
	pad := width - len([]rune(s))
	if right {
		for ; pad > 0; pad-- {
			b = append(b, ' ')
		}
	}
	b = append(b, s...)
	if !right {
		for ; pad > 0; pad-- {
			b = append(b, ' ')
		}
	}
	return b
}

// formatDuration prints milliseconds with microsecond precision, so that
// the column is easy to compare by eye: "1.234ms", "1503.000ms".
func formatDuration(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 3, 64) + "ms"
}

func serviceLabel(p *span.Process) string {
	if p == nil {
		return "-"
	}
	name := p.ServiceName
	if name == "" {
		name = "?"
	}
	return name + "[" + strconv.FormatUint(uint64(p.PID), 10) + "]"
}

func attrIndex(kvs []attribute.KeyValue) map[attribute.Key]attribute.Value {
	m := make(map[attribute.Key]attribute.Value, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	return m
}

func hostPort(attrs map[attribute.Key]attribute.Value, hostKey, portKey attribute.Key) string {
	h, ok := attrs[hostKey]
	if !ok {
		return ""
	}
	host := h.Emit()
	if strings.Contains(host, ":") {
		host = "[" + host + "]" // IPv6
	}
	if p, ok := attrs[portKey]; ok {
		return host + ":" + p.Emit()
	}
	return host
}

// jsonSpan is the JSON-lines form of a span.
type jsonSpan struct {
	TraceID       string         `json:"trace_id"`
	SpanID        string         `json:"span_id"`
	ParentSpanID  string         `json:"parent_span_id,omitempty"`
	RemoteParent  bool           `json:"remote_parent,omitempty"`
	Kind          string         `json:"kind"`
	Name          string         `json:"name"`
	Start         time.Time      `json:"start"`
	End           time.Time      `json:"end"`
	DurationMS    float64        `json:"duration_ms"`
	Status        string         `json:"status"`
	StatusMessage string         `json:"status_message,omitempty"`
	Attributes    map[string]any `json:"attributes"`
	Resource      map[string]any `json:"resource"`
	Events        []jsonEvent    `json:"events,omitempty"`
}

type jsonEvent struct {
	Name       string         `json:"name"`
	Time       time.Time      `json:"time"`
	Attributes map[string]any `json:"attributes,omitempty"`
}

// appendJSON appends one JSON object and a newline.
func appendJSON(b []byte, s *span.Span) ([]byte, error) {
	js := jsonSpan{
		TraceID:       s.TraceID.String(),
		SpanID:        s.SpanID.String(),
		RemoteParent:  s.RemoteParent && s.ParentSpanID.IsValid(),
		Kind:          strings.ToUpper(s.Kind.String()),
		Name:          s.Name,
		Start:         s.Start,
		End:           s.End,
		DurationMS:    float64(s.End.Sub(s.Start)) / float64(time.Millisecond),
		Status:        s.Status.String(),
		StatusMessage: s.StatusMsg,
		Attributes:    attrMap(s.Attributes),
		Resource:      map[string]any{},
	}
	if s.ParentSpanID.IsValid() {
		js.ParentSpanID = s.ParentSpanID.String()
	}
	if p := s.Process; p != nil {
		for _, kv := range p.Attributes {
			js.Resource[string(kv.Key)] = kv.Value.AsInterface()
		}
		if p.ServiceName != "" {
			js.Resource[keyServiceName] = p.ServiceName
		}
	}
	for _, ev := range s.Events {
		js.Events = append(js.Events, jsonEvent{Name: ev.Name, Time: ev.Time, Attributes: attrMapOmitEmpty(ev.Attributes)})
	}
	buf := bytes.NewBuffer(b)
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(js); err != nil { // Encode adds the newline.
		return b, fmt.Errorf("encode span %s: %w", s.SpanID, err)
	}
	return buf.Bytes(), nil
}

func attrMap(kvs []attribute.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

func attrMapOmitEmpty(kvs []attribute.KeyValue) map[string]any {
	if len(kvs) == 0 {
		return nil
	}
	return attrMap(kvs)
}
