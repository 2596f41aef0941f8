package bouncer

import (
	"fmt"
	"iter"
	"slices"
	"sort"
)

// chunkMax is the most elements a chunk holds. A delta copies each chunk it touches
// and the chunk index (one slice header and one key per chunk): 128 keeps both small
// for a set of a million addresses (8k chunks of 2 KiB, an index of about 300 KiB).
const chunkMax = 128

// chunkMin is the size under which a chunk a delta shrank is merged with the next one,
// so that deletes do not leave the index full of tiny chunks.
const chunkMin = chunkMax / 4

// sortedKey is an element of a chunked sequence. compare orders elements; two
// different elements of one sequence never compare equal.
type sortedKey[T any] interface {
	comparable
	compare(T) int
}

// chunked is an immutable sorted sequence of elements split into chunks of at most
// chunkMax elements. A change builds new chunks only where it lands and shares all
// others with the sequence it came from, so it costs the size of the change (plus the
// small index), not the size of the sequence; readers of an older version (the state
// file saver, a layout being built) are never disturbed. The zero value is empty.
type chunked[T sortedKey[T]] struct {
	chunks [][]T // non-empty, each sorted, each sharing no memory with another
	firsts []T   // firsts[i] == chunks[i][0]: a compact index for binary search
	n      int
}

// chunkedOf returns the sequence of s, which must be sorted without duplicates.
func chunkedOf[T sortedKey[T]](s []T) chunked[T] { return chunkedFrom(slices.Values(s)) }

// chunkedFrom returns the sequence of the elements of s, which come sorted; repeats of
// an element are dropped. The chunks are allocated one by one (none aliases the input
// or another chunk), so a chunk a later change replaces is freed on its own.
func chunkedFrom[T sortedKey[T]](s iter.Seq[T]) chunked[T] {
	var c chunked[T]
	var cur []T
	for x := range s {
		if len(cur) > 0 && cur[len(cur)-1] == x {
			continue
		}
		if len(cur) == chunkMax {
			c.chunks, c.firsts = append(c.chunks, cur), append(c.firsts, cur[0])
			cur = nil
		}
		if cur == nil {
			cur = make([]T, 0, chunkMax)
		}
		cur = append(cur, x)
		c.n++
	}
	if len(cur) > 0 {
		// A small set (most rules) does not keep a whole chunk's capacity.
		cur = slices.Clone(cur)
		c.chunks, c.firsts = append(c.chunks, cur), append(c.firsts, cur[0])
	}
	return c
}

// Len is the number of elements.
func (c chunked[T]) Len() int { return c.n }

// all yields the elements in order.
func (c chunked[T]) all() iter.Seq[T] {
	return func(yield func(T) bool) {
		for _, ch := range c.chunks {
			for _, x := range ch {
				if !yield(x) {
					return
				}
			}
		}
	}
}

// chunkOf is the index of the chunk x belongs in: the last chunk whose first element
// is not after x, or from when x comes before chunk from.
func (c chunked[T]) chunkOf(x T, from int) int {
	i := from + sort.Search(len(c.firsts)-from, func(i int) bool { return c.firsts[from+i].compare(x) > 0 })
	return max(i-1, from)
}

// find returns the element that compares equal to x.
func (c chunked[T]) find(x T) (T, bool) {
	var zero T
	if c.n == 0 {
		return zero, false
	}
	ch := c.chunks[c.chunkOf(x, 0)]
	j, ok := slices.BinarySearchFunc(ch, x, T.compare)
	if !ok {
		return zero, false
	}
	return ch[j], true
}

// has reports whether x is an element.
func (c chunked[T]) has(x T) bool {
	y, ok := c.find(x)
	return ok && y == x
}

// seek yields, in order, the elements from the first one for which after is true;
// after must be false for a prefix of the sequence and true for the rest.
func (c chunked[T]) seek(after func(T) bool) iter.Seq[T] {
	return func(yield func(T) bool) {
		i := sort.Search(len(c.chunks), func(i int) bool { ch := c.chunks[i]; return after(ch[len(ch)-1]) })
		if i == len(c.chunks) {
			return
		}
		j := sort.Search(len(c.chunks[i]), func(j int) bool { return after(c.chunks[i][j]) })
		for ; i < len(c.chunks); i, j = i+1, 0 {
			for _, x := range c.chunks[i][j:] {
				if !yield(x) {
					return
				}
			}
		}
	}
}

// edit returns (c \ del) ∪ ins. del and ins are sorted without duplicates; every
// element of del is in c, and no element of ins compares equal to an element of
// c \ del. c is not modified: the chunks the edit lands in are rebuilt, the index is
// copied, all other chunks are shared.
func (c chunked[T]) edit(del, ins []T) chunked[T] {
	if len(del)+len(ins) == 0 {
		return c
	}
	if c.n == 0 {
		return chunkedOf(ins)
	}
	out := chunked[T]{
		chunks: make([][]T, 0, len(c.chunks)+len(ins)/chunkMax+1),
		firsts: make([]T, 0, len(c.chunks)+len(ins)/chunkMax+1),
		n:      c.n + len(ins) - len(del),
	}
	emit := func(ch []T) {
		out.chunks = append(out.chunks, ch)
		out.firsts = append(out.firsts, ch[0])
	}
	// below counts the elements of s before chunk k+1, the ones that land in chunk k.
	below := func(s []T, k int) int {
		if k+1 == len(c.firsts) {
			return len(s)
		}
		return sort.Search(len(s), func(i int) bool { return s[i].compare(c.firsts[k+1]) >= 0 })
	}
	var carry []T // a shrunk chunk waiting to be merged with the next one
	next := 0     // the first chunk of c not yet copied or rebuilt
	for next < len(c.chunks) && (len(del)+len(ins) > 0 || len(carry) > 0) {
		k := next
		if len(carry) == 0 {
			// Share the chunks up to the one the next change lands in.
			switch {
			case len(del) == 0:
				k = c.chunkOf(ins[0], next)
			case len(ins) == 0 || del[0].compare(ins[0]) < 0:
				k = c.chunkOf(del[0], next)
			default:
				k = c.chunkOf(ins[0], next)
			}
			out.chunks = append(out.chunks, c.chunks[next:k]...)
			out.firsts = append(out.firsts, c.firsts[next:k]...)
		}
		nd, ni := below(del, k), below(ins, k)
		merged := mergeChunk(carry, c.chunks[k], del[:nd], ins[:ni])
		del, ins, carry, next = del[nd:], ins[ni:], nil, k+1
		switch {
		case len(merged) < chunkMin && next < len(c.chunks):
			carry = merged
		case len(merged) <= chunkMax:
			if len(merged) > 0 {
				emit(merged)
			}
		default:
			// Split an overfull chunk into equal parts, each its own allocation.
			parts := (len(merged) + chunkMax - 1) / chunkMax
			for p := range parts {
				emit(slices.Clone(merged[p*len(merged)/parts : (p+1)*len(merged)/parts]))
			}
		}
	}
	out.chunks = append(out.chunks, c.chunks[next:]...)
	out.firsts = append(out.firsts, c.firsts[next:]...)
	if out.n == 0 {
		return chunked[T]{}
	}
	return out
}

// mergeChunk returns carry followed by (ch \ del) ∪ ins in a new slice; carry comes
// before everything in ch and ins.
func mergeChunk[T sortedKey[T]](carry, ch, del, ins []T) []T {
	want := len(carry) + len(ch) + len(ins) - len(del)
	out := make([]T, 0, want)
	out = append(out, carry...)
	d, i := 0, 0
	for _, x := range ch {
		if d < len(del) && del[d] == x {
			d++
			continue
		}
		for i < len(ins) && ins[i].compare(x) < 0 {
			out = append(out, ins[i])
			i++
		}
		out = append(out, x)
	}
	out = append(out, ins[i:]...)
	if d != len(del) || len(out) != want {
		// The callers only delete elements they found and insert ones they did not.
		panic(fmt.Sprintf("bouncer: chunked edit: %d of %d deletes matched, %d elements, want %d", d, len(del), len(out), want))
	}
	return out
}
