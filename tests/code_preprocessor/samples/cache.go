// Package cache is a small LRU cache with expiry.
package cache

import (
	"container/list"
	"errors"
	"fmt"
	"sync"
	tm "time"
)

// ErrMissing is returned for keys that are not cached.
var ErrMissing = errors.New("cache: missing key")

// Store is what a cache can be backed by.
type Store interface {
	fmt.Stringer
	Get(key string) ([]byte, error)
	Put(key string, value []byte) error
}

type entry struct {
	key     string
	value   []byte
	expires tm.Time
}

// LRU is a least-recently-used cache. Safe for concurrent use.
type LRU[K comparable] struct {
	sync.Mutex
	capacity int
	order    *list.List
	items    map[K]*list.Element
}

// New makes an LRU that holds up to capacity entries.
func New[K comparable](capacity int) *LRU[K] {
	return &LRU[K]{capacity: capacity, order: list.New(), items: make(map[K]*list.Element)}
}

// Get returns the value for key and marks it recently used.
func (c *LRU[K]) Get(key K) ([]byte, error) {
	c.Lock()
	defer c.Unlock()
	el, ok := c.items[key]
	if !ok {
		return nil, ErrMissing
	}
	c.order.MoveToFront(el)
	return el.Value.(*entry).value, nil
}

// Put stores value under key, evicting the oldest entry when full.
func (c *LRU[K]) Put(key K, value []byte) {
	c.Lock()
	defer c.Unlock()
	evict := func() {
		oldest := c.order.Back()
		c.order.Remove(oldest)
	}
	if c.order.Len() >= c.capacity {
		evict()
	}
	c.items[key] = c.order.PushFront(&entry{value: value, expires: tm.Now().Add(tm.Minute)})
}

func (c LRU[K]) String() string {
	return fmt.Sprintf("LRU(%d/%d)", c.order.Len(), c.capacity)
}

type (
	// Stats counts hits and misses.
	Stats struct {
		Hits, Misses int
	}
	// Observer is told about evictions.
	Observer interface {
		Evicted(key string)
	}
)

func main() {
	c := New[string](2)
	c.Put("a", []byte("1"))
	if _, err := c.Get("b"); errors.Is(err, ErrMissing) {
		fmt.Println(c)
	}
}
