/* Ring buffer of log records, flushed to a sink when full. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ringbuf.h"

#define RB_DEFAULT_CAPACITY 64

/* One log line and when it was taken. */
typedef struct record {
    long timestamp;
    char text[128];
} record_t;

/* Severity of a record. */
enum level {
    LEVEL_DEBUG,
    LEVEL_INFO,
    LEVEL_ERROR,
};

typedef enum { SINK_FILE, SINK_SOCKET } sink_kind;

// A fixed-size ring of records.
struct ringbuf {
    record_t *slots;
    size_t head;
    size_t count;
    size_t capacity;
    struct stats {
        unsigned long pushed;
        unsigned long dropped;
    } stats;
};

typedef struct {
    sink_kind kind;
    FILE *out;
    int (*write)(FILE *out, const record_t *rec);
} sink_t;

static int write_line(FILE *out, const record_t *rec)
{
    return fprintf(out, "%ld %s\n", rec->timestamp, rec->text);
}

/*
 * Allocates a ring buffer with room for `capacity` records.
 * Returns NULL when out of memory.
 */
struct ringbuf *rb_new(size_t capacity)
{
    struct ringbuf *rb = calloc(1, sizeof *rb);
    if (rb == NULL)
        return NULL;
    rb->capacity = capacity ? capacity : RB_DEFAULT_CAPACITY;
    rb->slots = calloc(rb->capacity, sizeof(record_t));
    return rb;
}

// Flushes every record to the sink, oldest first.
size_t rb_flush(struct ringbuf *rb, sink_t *sink)
{
    size_t written = 0;
    while (rb->count > 0) {
        const record_t *rec = &rb->slots[rb->head];
        if (sink->write(sink->out, rec) < 0)
            break;
        rb->head = (rb->head + 1) % rb->capacity;
        rb->count--;
        written++;
    }
    fflush(sink->out);
    return written;
}

int rb_push(struct ringbuf *rb, sink_t *sink, long ts, const char *text)
{
    if (rb->count == rb->capacity && rb_flush(rb, sink) == 0) {
        rb->stats.dropped++;
        return -1;
    }
    record_t *slot = &rb->slots[(rb->head + rb->count) % rb->capacity];
    slot->timestamp = ts;
    strncpy(slot->text, text, sizeof slot->text - 1);
    rb->count++;
    rb->stats.pushed++;
    return 0;
}

int main(void)
{
    sink_t sink = { SINK_FILE, stdout, write_line };
    struct ringbuf *rb = rb_new(4);
    for (long i = 0; i < 10; i++)
        rb_push(rb, &sink, i, "tick");
    rb_flush(rb, &sink);
    free(rb->slots);
    free(rb);
    return 0;
}
