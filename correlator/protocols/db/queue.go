package db

// Queue is a bounded FIFO of the requests waiting for their responses. A
// request that finds it full is not stored: it is counted as a run of
// anonymous requests behind the last stored one, so that responses still
// pair with the right requests after an overflow. Memory is bounded by the
// capacity whatever the pipeline depth.
type Queue[T any] struct {
	items []slot[T]
	head  int
	n     int
	stats *Stats
}

type slot[T any] struct {
	v    T
	anon int // anonymous requests right after v (or before the first item)
	real bool
}

// NewQueue returns a queue that stores up to capacity requests.
func NewQueue[T any](capacity int, stats *Stats) *Queue[T] {
	return &Queue[T]{items: make([]slot[T], max(capacity, 1)), stats: stats}
}

// Len returns the number of requests waiting, stored or anonymous.
func (q *Queue[T]) Len() int {
	total := 0
	for i := 0; i < q.n; i++ {
		s := q.at(i)
		total += s.anon
		if s.real {
			total++
		}
	}
	return total
}

// Push adds a request; it returns false (and counts it) when the request
// could not be stored.
func (q *Queue[T]) Push(v T) bool {
	if q.n == len(q.items) {
		q.overflow()
		return false
	}
	*q.at(q.n) = slot[T]{v: v, real: true}
	q.n++
	return true
}

func (q *Queue[T]) overflow() {
	if q.stats != nil {
		q.stats.Overflowed.Add(1)
	}
	if q.n == 0 {
		*q.at(0) = slot[T]{anon: 1}
		q.n = 1
		return
	}
	q.at(q.n-1).anon++
}

// Peek returns the oldest request; ok is false when the oldest is
// anonymous or the queue is empty (empty reports false for Waiting).
func (q *Queue[T]) Peek() (v T, ok bool) {
	if q.n == 0 || !q.at(0).real {
		return v, false
	}
	return q.at(0).v, true
}

// PeekPtr returns a pointer to the oldest stored request, nil when the
// oldest is anonymous or the queue is empty.
func (q *Queue[T]) PeekPtr() *T {
	if q.n == 0 || !q.at(0).real {
		return nil
	}
	return &q.at(0).v
}

// Pop removes the oldest request, stored or anonymous; it returns the
// request and whether it was stored. Popping an empty queue returns false.
func (q *Queue[T]) Pop() (v T, ok bool) {
	if q.n == 0 {
		return v, false
	}
	s := q.at(0)
	if s.real {
		v, ok = s.v, true
		if s.anon > 0 {
			// the anonymous run moves to the front as a placeholder
			*s = slot[T]{anon: s.anon}
			return v, ok
		}
	} else if s.anon > 1 {
		s.anon--
		return v, false
	}
	*s = slot[T]{}
	q.head = (q.head + 1) % len(q.items)
	q.n--
	return v, ok
}

// Empty reports whether no request is waiting.
func (q *Queue[T]) Empty() bool { return q.n == 0 }

// Drain removes every request and returns the stored ones, oldest first.
func (q *Queue[T]) Drain() []T {
	var out []T
	for !q.Empty() {
		if v, ok := q.Pop(); ok {
			out = append(out, v)
		}
	}
	return out
}

func (q *Queue[T]) at(i int) *slot[T] { return &q.items[(q.head+i)%len(q.items)] }

// Full reports whether the next Push will not be stored.
func (q *Queue[T]) Full() bool { return q.n == len(q.items) }
