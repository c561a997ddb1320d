/**
 * Column memory that goes round: builders take their buffers here, an encoder worker sends them
 * back once a row group is encoded, and the next builders fill them again.
 *
 * Fresh memory is what made column building slow. A buffer of a megabyte or more is mapped anew
 * on every allocation, and the first write to each of its pages is a page fault: the clickstream
 * job (1M events) took about 214,000 of them, 3-5 s of system time, most of it charged to the
 * writes into new string buffers on the main thread. Buffers that come back are already mapped.
 *
 * Sizes are powers of two (builders grow by doubling), so a buffer fits any later request of its
 * size class. What is kept is capped: past {@link MAX_KEPT} bytes, returned buffers are left to
 * the garbage collector. The pool is shared by every run in the process; a buffer is only ever in
 * one place (a builder, a message to a worker, or here), so runs cannot see each other's rows.
 */

/** Bytes of idle buffers kept for reuse, over every size class. */
const MAX_KEPT = 64 * 1024 * 1024;
/** Buffers below this size are cheap to allocate and are not kept. */
const MIN_KEPT = 4096;

const idle = new Map<number, ArrayBuffer[]>();
let keptBytes = 0;

/** The smallest power of two at or above `bytes` (at least 16). */
export function sizeClass(bytes: number): number {
  let size = 16;
  while (size < bytes) size *= 2;
  return size;
}

/**
 * An `ArrayBuffer` of `sizeClass(bytes)` bytes, reused when one is idle. Its contents are
 * whatever its last user left: callers write before they read.
 */
export function takeBuffer(bytes: number): ArrayBuffer {
  const size = sizeClass(bytes);
  const buffer = idle.get(size)?.pop();
  if (buffer) {
    keptBytes -= size;
    return buffer;
  }
  return new ArrayBuffer(size);
}

/**
 * Hands a buffer back for reuse. Only its sole owner may: nothing may read or write it
 * afterwards. Detached buffers (moved to a worker), odd sizes and buffers past the cap are
 * ignored.
 */
export function giveBack(buffer: ArrayBuffer): void {
  const size = buffer.byteLength;
  if (size < MIN_KEPT || size !== sizeClass(size) || keptBytes + size > MAX_KEPT) return;
  if (buffer.resizable || buffer.detached) return;
  let list = idle.get(size);
  if (!list) idle.set(size, (list = []));
  list.push(buffer);
  keptBytes += size;
}
