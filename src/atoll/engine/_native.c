/*
 * atoll.engine._native: the two hot loops of a point read, in C.
 *
 * Optional: built by `pip install` when a compiler is present; otherwise
 * atoll.engine.sstable_format and atoll.engine.bloom fall back to their Python
 * versions, which define the behaviour (tests/property compares the two). Reads
 * only from the buffers it is given; no I/O, no state.
 *
 *   bloom_may_contain(bits: bytes, nbits: int, k: int, key: bytes) -> bool
 *       docs/formats.md §3.3: h = CRC-32C(key), step = CRC-32(key),
 *       probe i tests bit (h + i * step) mod nbits.
 *   block_find(data: buffer, key: bytes, seq_limit: int) -> tuple | None
 *       docs/formats.md §3: the newest version of key with seq <= seq_limit in a
 *       CRC-verified block: (True, value), (True, None) for a tombstone,
 *       (False, None) if absent, None if its versions may continue in the next
 *       block. Offsets are bounds-checked: a malformed block raises ValueError.
 *   table_get(bits, nbits, k, last_keys, cache, cache_base, key, seq_limit, start)
 *       a point read in one SSTable: with start < 0, the bloom probe and the
 *       binary search over the index's last keys choose the first block; then
 *       each block is looked up in the block cache (a dict of cache_base | index
 *       -> [data, referenced]), marked referenced and searched. Returns what
 *       block_find does (ABSENT when the key is past the last block), or the
 *       int index of a block missing from the cache (the caller loads it and
 *       calls again with start = that index).
 *   decode_batch(payload: bytes, keys: list, values: list) -> (first_seq, ops)
 *       docs/formats.md §2: appends the batch's keys and values to the lists;
 *       a malformed payload raises ValueError and appends nothing.
 *   key_hashes(keys: list) -> (bytes, bytes)
 *       CRC-32C and CRC-32 of every key, as little-endian u32 arrays (bloom build).
 *   block_columns(data: buffer) -> (keys, seqs, kinds, values)
 *       every entry of a CRC-verified block (compaction input): lists of keys, of
 *       sequence numbers and of values (b"" for tombstones), kinds as bytes.
 *   entry_sizes(keys: list, values: list, overhead: int) -> bytes
 *       len(key) + len(value) + overhead of every entry, as little-endian i64.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static uint32_t crc32c_table[256];
static uint32_t crc32_table[256];
static PyObject *absent;  /* (False, None) */
static PyObject *deleted; /* (True, None) */

static void init_table(uint32_t *table, uint32_t poly) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int j = 0; j < 8; j++) c = (c & 1) ? (c >> 1) ^ poly : c >> 1;
        table[i] = c;
    }
}

static uint32_t crc(const uint32_t *table, const unsigned char *p, Py_ssize_t n) {
    uint32_t c = 0xFFFFFFFFu;
    while (n-- > 0) c = table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static inline uint32_t u32_at(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t u64_at(const unsigned char *p) {
    return (uint64_t)u32_at(p) | (uint64_t)u32_at(p + 4) << 32;
}

static PyObject *bloom_may_contain(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyBytes_Check(args[0]) || !PyBytes_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "bloom_may_contain(bits, nbits, k, key)");
        return NULL;
    }
    uint64_t nbits = PyLong_AsUnsignedLongLong(args[1]);
    long k = PyLong_AsLong(args[2]);
    if (PyErr_Occurred()) return NULL;
    const unsigned char *bits = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    if (nbits == 0 || (uint64_t)size * 8 < nbits) {
        PyErr_SetString(PyExc_ValueError, "bloom filter shorter than its declared size");
        return NULL;
    }
    const unsigned char *key = (const unsigned char *)PyBytes_AS_STRING(args[3]);
    Py_ssize_t klen = PyBytes_GET_SIZE(args[3]);
    uint64_t h = crc(crc32c_table, key, klen);
    uint64_t step = crc(crc32_table, key, klen);
    for (long i = 0; i < k; i++) {
        uint64_t pos = h % nbits;
        if (!(bits[pos >> 3] & (1u << (pos & 7)))) Py_RETURN_FALSE;
        h += step;
    }
    Py_RETURN_TRUE;
}

static int key_cmp(const unsigned char *a, Py_ssize_t alen, const unsigned char *b, Py_ssize_t blen) {
    Py_ssize_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, (size_t)n) : 0;
    if (c) return c;
    return alen < blen ? -1 : (alen > blen ? 1 : 0);
}

static PyObject *find_in(const unsigned char *d, Py_ssize_t size, const unsigned char *key,
                         Py_ssize_t klen, uint64_t seq_limit);

static PyObject *block_find(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "block_find(data, key: bytes, seq_limit)");
        return NULL;
    }
    uint64_t seq_limit = PyLong_AsUnsignedLongLong(args[2]);
    if (PyErr_Occurred()) return NULL;
    const unsigned char *key = (const unsigned char *)PyBytes_AS_STRING(args[1]);
    Py_ssize_t klen = PyBytes_GET_SIZE(args[1]);
    if (PyBytes_Check(args[0]))
        return find_in((const unsigned char *)PyBytes_AS_STRING(args[0]), PyBytes_GET_SIZE(args[0]), key,
                       klen, seq_limit);
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *out = find_in((const unsigned char *)view.buf, view.len, key, klen, seq_limit);
    PyBuffer_Release(&view);
    return out;
}

static PyObject *find_in(const unsigned char *d, Py_ssize_t size, const unsigned char *key,
                         Py_ssize_t klen, uint64_t seq_limit) {
    if (size < 20) goto malformed;
    uint64_t n = u32_at(d);
    if (20 + 17 * n > (uint64_t)size) goto malformed;
    const unsigned char *koff = d + 8;
    const unsigned char *voff = d + 12 + 4 * n;
    const unsigned char *seqs = d + 16 + 8 * n;
    const unsigned char *kinds = d + 16 + 16 * n;
    uint64_t kbase = 16 + 17 * n;
    uint64_t kend = kbase + u32_at(koff + 4 * n);
    if (kend > (uint64_t)size - 4) goto malformed;
    uint64_t lo = 0, hi = n;
    while (lo < hi) {
        uint64_t mid = (lo + hi) >> 1;
        uint64_t a = u32_at(koff + 4 * mid), b = u32_at(koff + 4 * mid + 4);
        if (a > b || kbase + b > kend) goto malformed;
        if (key_cmp(d + kbase + a, (Py_ssize_t)(b - a), key, klen) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (uint64_t j = lo; j < n; j++) {
        uint64_t a = u32_at(koff + 4 * j), b = u32_at(koff + 4 * j + 4);
        if (a > b || kbase + b > kend) goto malformed;
        if (key_cmp(d + kbase + a, (Py_ssize_t)(b - a), key, klen) != 0) {
            Py_INCREF(absent);
            return absent;
        }
        if (u64_at(seqs + 8 * j) <= seq_limit) {
            if (kinds[j] == 0) {
                Py_INCREF(deleted);
                return deleted;
            }
            uint64_t va = u32_at(voff + 4 * j), vb = u32_at(voff + 4 * j + 4);
            if (va > vb || kend + vb > (uint64_t)size - 4) goto malformed;
            PyObject *value = PyBytes_FromStringAndSize((const char *)d + kend + va, (Py_ssize_t)(vb - va));
            if (!value) return NULL;
            PyObject *out = PyTuple_Pack(2, Py_True, value);
            Py_DECREF(value);
            return out;
        }
    }
    Py_RETURN_NONE;
malformed:
    PyErr_SetString(PyExc_ValueError, "malformed SSTable block");
    return NULL;
}

static PyObject *decode_batch(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyBytes_Check(args[0]) || !PyList_Check(args[1]) || !PyList_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "decode_batch(payload, keys, values)");
        return NULL;
    }
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    uint64_t size = (uint64_t)PyBytes_GET_SIZE(args[0]);
    if (size < 12) goto malformed;
    uint64_t first_seq = u64_at(d);
    uint64_t n = u32_at(d + 8);
    uint64_t pos = 12;
    if (pos + 9 * n > size) goto malformed;
    const unsigned char *ops = d + pos;
    const unsigned char *klens = ops + n;
    const unsigned char *vlens = klens + 4 * n;
    uint64_t kpos = pos + 9 * n, total = kpos;
    for (uint64_t i = 0; i < n; i++) total += (uint64_t)u32_at(klens + 4 * i) + u32_at(vlens + 4 * i);
    if (total != size) goto malformed;
    PyObject *keys = args[1], *values = args[2];
    Py_ssize_t keys0 = PyList_GET_SIZE(keys), values0 = PyList_GET_SIZE(values);
    uint64_t vpos = kpos;
    for (uint64_t i = 0; i < n; i++) vpos += u32_at(klens + 4 * i);
    for (uint64_t i = 0; i < n; i++) {
        uint32_t kl = u32_at(klens + 4 * i), vl = u32_at(vlens + 4 * i);
        PyObject *k = PyBytes_FromStringAndSize((const char *)d + kpos, kl);
        if (!k || PyList_Append(keys, k) < 0) { Py_XDECREF(k); goto fail; }
        Py_DECREF(k);
        PyObject *v = PyBytes_FromStringAndSize((const char *)d + vpos, vl);
        if (!v || PyList_Append(values, v) < 0) { Py_XDECREF(v); goto fail; }
        Py_DECREF(v);
        kpos += kl;
        vpos += vl;
    }
    return Py_BuildValue("(Ky#)", (unsigned long long)first_seq, (const char *)ops, (Py_ssize_t)n);
fail:
    PyList_SetSlice(keys, keys0, PyList_GET_SIZE(keys), NULL);
    PyList_SetSlice(values, values0, PyList_GET_SIZE(values), NULL);
    return NULL;
malformed:
    PyErr_SetString(PyExc_ValueError, "malformed WAL batch");
    return NULL;
}

static int bloom_test(const unsigned char *bits, uint64_t nbits, long k, const unsigned char *key,
                      Py_ssize_t klen) {
    uint64_t h = crc(crc32c_table, key, klen);
    uint64_t step = crc(crc32_table, key, klen);
    for (long i = 0; i < k; i++) {
        uint64_t pos = h % nbits;
        if (!(bits[pos >> 3] & (1u << (pos & 7)))) return 0;
        h += step;
    }
    return 1;
}

static PyObject *table_get(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 9 || !PyBytes_Check(args[0]) || !PyList_Check(args[3]) || !PyDict_Check(args[4]) ||
        !PyBytes_Check(args[6])) {
        PyErr_SetString(PyExc_TypeError,
                        "table_get(bits, nbits, k, last_keys, cache, cache_base, key, seq_limit, start)");
        return NULL;
    }
    uint64_t nbits = PyLong_AsUnsignedLongLong(args[1]);
    long k = PyLong_AsLong(args[2]);
    uint64_t cache_base = PyLong_AsUnsignedLongLong(args[5]);
    uint64_t seq_limit = PyLong_AsUnsignedLongLong(args[7]);
    Py_ssize_t start = PyLong_AsSsize_t(args[8]);
    if (PyErr_Occurred()) return NULL;
    const unsigned char *key = (const unsigned char *)PyBytes_AS_STRING(args[6]);
    Py_ssize_t klen = PyBytes_GET_SIZE(args[6]);
    PyObject *last_keys = args[3];
    Py_ssize_t nblocks = PyList_GET_SIZE(last_keys);
    Py_ssize_t i = start;
    if (start < 0) {
        if (nbits == 0 || (uint64_t)PyBytes_GET_SIZE(args[0]) * 8 < nbits) {
            PyErr_SetString(PyExc_ValueError, "bloom filter shorter than its declared size");
            return NULL;
        }
        if (!bloom_test((const unsigned char *)PyBytes_AS_STRING(args[0]), nbits, k, key, klen)) {
            Py_INCREF(absent);
            return absent;
        }
        Py_ssize_t lo = 0, hi = nblocks;
        while (lo < hi) {
            Py_ssize_t mid = (lo + hi) / 2;
            PyObject *lk = PyList_GET_ITEM(last_keys, mid);
            if (!PyBytes_Check(lk)) {
                PyErr_SetString(PyExc_TypeError, "last_keys must hold bytes");
                return NULL;
            }
            if (key_cmp((const unsigned char *)PyBytes_AS_STRING(lk), PyBytes_GET_SIZE(lk), key, klen) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        i = lo;
    }
    for (; i < nblocks; i++) {
        PyObject *ck = PyLong_FromUnsignedLongLong(cache_base | (uint64_t)i);
        if (!ck) return NULL;
        PyObject *entry = PyDict_GetItemWithError(args[4], ck); /* borrowed */
        Py_DECREF(ck);
        if (!entry) {
            if (PyErr_Occurred()) return NULL;
            return PyLong_FromSsize_t(i);
        }
        if (!PyList_Check(entry) || PyList_GET_SIZE(entry) != 2) {
            PyErr_SetString(PyExc_TypeError, "cache entries must be [data, referenced]");
            return NULL;
        }
        Py_INCREF(entry); /* the list may leave the cache while we read it */
        Py_INCREF(Py_True);
        PyList_SetItem(entry, 1, Py_True);
        PyObject *data = PyList_GET_ITEM(entry, 0);
        Py_INCREF(data);
        Py_DECREF(entry);
        Py_buffer view;
        if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
            Py_DECREF(data);
            return NULL;
        }
        PyObject *found = find_in((const unsigned char *)view.buf, view.len, key, klen, seq_limit);
        PyBuffer_Release(&view);
        Py_DECREF(data);
        if (found != Py_None) return found; /* a result, or NULL with an error set */
        Py_DECREF(found);
    }
    Py_INCREF(absent);
    return absent;
}

static int put_u32(unsigned char *p, uint32_t v) {
    p[0] = v & 0xFF; p[1] = (v >> 8) & 0xFF; p[2] = (v >> 16) & 0xFF; p[3] = v >> 24;
    return 0;
}

static PyObject *key_hashes(PyObject *self, PyObject *keys) {
    if (!PyList_Check(keys)) {
        PyErr_SetString(PyExc_TypeError, "key_hashes(keys: list)");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(keys);
    PyObject *a = PyBytes_FromStringAndSize(NULL, 4 * n);
    PyObject *b = PyBytes_FromStringAndSize(NULL, 4 * n);
    if (!a || !b) { Py_XDECREF(a); Py_XDECREF(b); return NULL; }
    unsigned char *pa = (unsigned char *)PyBytes_AS_STRING(a), *pb = (unsigned char *)PyBytes_AS_STRING(b);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *k = PyList_GET_ITEM(keys, i);
        if (!PyBytes_Check(k)) {
            Py_DECREF(a); Py_DECREF(b);
            PyErr_SetString(PyExc_TypeError, "keys must be bytes");
            return NULL;
        }
        const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(k);
        Py_ssize_t len = PyBytes_GET_SIZE(k);
        put_u32(pa + 4 * i, crc(crc32c_table, p, len));
        put_u32(pb + 4 * i, crc(crc32_table, p, len));
    }
    PyObject *out = PyTuple_Pack(2, a, b);
    Py_DECREF(a);
    Py_DECREF(b);
    return out;
}

static PyObject *entry_sizes(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyList_Check(args[0]) || !PyList_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "entry_sizes(keys, values, overhead)");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(args[0]);
    long long overhead = PyLong_AsLongLong(args[2]);
    if (PyErr_Occurred()) return NULL;
    if (PyList_GET_SIZE(args[1]) != n) {
        PyErr_SetString(PyExc_ValueError, "keys and values differ in length");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, 8 * n);
    if (!out) return NULL;
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *k = PyList_GET_ITEM(args[0], i), *v = PyList_GET_ITEM(args[1], i);
        if (!PyBytes_Check(k) || !PyBytes_Check(v)) {
            Py_DECREF(out);
            PyErr_SetString(PyExc_TypeError, "keys and values must be bytes");
            return NULL;
        }
        uint64_t size = (uint64_t)(PyBytes_GET_SIZE(k) + PyBytes_GET_SIZE(v) + overhead);
        put_u32(p + 8 * i, (uint32_t)size);
        put_u32(p + 8 * i + 4, (uint32_t)(size >> 32));
    }
    return out;
}

static PyObject *columns_of(const unsigned char *d, uint64_t size);

static PyObject *block_columns(PyObject *self, PyObject *data) {
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *out = columns_of((const unsigned char *)view.buf, (uint64_t)view.len);
    PyBuffer_Release(&view);
    return out;
}

static PyObject *columns_of(const unsigned char *d, uint64_t size) {
    if (size < 20) goto malformed;
    uint64_t n = u32_at(d);
    if (20 + 17 * n > size) goto malformed;
    const unsigned char *koff = d + 8, *voff = d + 12 + 4 * n, *seqs = d + 16 + 8 * n;
    uint64_t kbase = 16 + 17 * n;
    uint64_t kend = kbase + u32_at(koff + 4 * n);
    if (kend + u32_at(voff + 4 * n) != size - 4) goto malformed;
    PyObject *keys = PyList_New((Py_ssize_t)n), *vals = PyList_New((Py_ssize_t)n);
    PyObject *sq = PyList_New((Py_ssize_t)n);
    PyObject *kinds = PyBytes_FromStringAndSize((const char *)d + 16 + 16 * n, (Py_ssize_t)n);
    if (!keys || !vals || !sq || !kinds) goto fail;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t a = u32_at(koff + 4 * i), b = u32_at(koff + 4 * i + 4);
        uint64_t va = u32_at(voff + 4 * i), vb = u32_at(voff + 4 * i + 4);
        if (a > b || kbase + b > kend || va > vb || kend + vb > size - 4) {
            PyErr_SetString(PyExc_ValueError, "malformed SSTable block");
            goto fail;
        }
        PyObject *k = PyBytes_FromStringAndSize((const char *)d + kbase + a, (Py_ssize_t)(b - a));
        PyObject *v = PyBytes_FromStringAndSize((const char *)d + kend + va, (Py_ssize_t)(vb - va));
        PyObject *s = PyLong_FromUnsignedLongLong(u64_at(seqs + 8 * i));
        if (!k || !v || !s) { Py_XDECREF(k); Py_XDECREF(v); Py_XDECREF(s); goto fail; }
        PyList_SET_ITEM(keys, (Py_ssize_t)i, k);
        PyList_SET_ITEM(vals, (Py_ssize_t)i, v);
        PyList_SET_ITEM(sq, (Py_ssize_t)i, s);
    }
    PyObject *out = PyTuple_Pack(4, keys, sq, kinds, vals);
    Py_DECREF(keys); Py_DECREF(sq); Py_DECREF(kinds); Py_DECREF(vals);
    return out;
fail:
    Py_XDECREF(keys); Py_XDECREF(vals); Py_XDECREF(sq); Py_XDECREF(kinds);
    return NULL;
malformed:
    PyErr_SetString(PyExc_ValueError, "malformed SSTable block");
    return NULL;
}

static PyMethodDef methods[] = {
    {"table_get", (PyCFunction)(void (*)(void))table_get, METH_FASTCALL,
     "Point read in one SSTable through the block cache."},
    {"block_columns", (PyCFunction)block_columns, METH_O, "Every entry of a block."},
    {"decode_batch", (PyCFunction)(void (*)(void))decode_batch, METH_FASTCALL,
     "Decode a WAL batch payload into the given lists (docs/formats.md 2)."},
    {"key_hashes", (PyCFunction)key_hashes, METH_O, "CRC-32C and CRC-32 of every key."},
    {"entry_sizes", (PyCFunction)(void (*)(void))entry_sizes, METH_FASTCALL,
     "Encoded size of every entry."},
    {"bloom_may_contain", (PyCFunction)(void (*)(void))bloom_may_contain, METH_FASTCALL,
     "Bloom filter probe (docs/formats.md 3.3)."},
    {"block_find", (PyCFunction)(void (*)(void))block_find, METH_FASTCALL,
     "Point lookup in a verified SSTable block (docs/formats.md 3)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native", NULL, -1, methods};

PyMODINIT_FUNC PyInit__native(void) {
    init_table(crc32c_table, 0x82F63B78u);
    init_table(crc32_table, 0xEDB88320u);
    absent = PyTuple_Pack(2, Py_False, Py_None);
    deleted = PyTuple_Pack(2, Py_True, Py_None);
    if (!absent || !deleted) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "ABSENT", absent) < 0 || PyModule_AddObjectRef(m, "DELETED", deleted) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
