/**
 * The text of an element of `fromJson`'s array, decoded from its bytes one element at a time, as
 * `fromNdjson` decodes a line.
 *
 * Decoding every element of a chunk with one `TextDecoder` call and slicing the result looked
 * cheaper (one call instead of thousands), but a chunk of the clickstream document always holds
 * some text above U+00FF, so the decoder gave two-byte text for the whole chunk, and every element
 * sliced from it was two-byte text too: the fatal decoder took 11% of the job's main thread, and
 * the sink then wrote two-byte strings. Element by element, an ASCII element is copied as one-byte
 * text by the decoder, one whose characters are all U+00FF or below (`é`, `ü`, `ß`) is made
 * one-byte text by `latin1Text`, and only the rest go through a UTF-8 decoder.
 */
import { firstHighByte as firstHigh, spanText, wordsOf } from "../lines.ts";

/** A Buffer over `bytes` (Buffer's decoders and `copy` take one), and 32-bit words over them when aligned. */
export interface ByteViews {
  /** The bytes the views were made over. */
  readonly of: Uint8Array;
  readonly bytes: Buffer;
  readonly words: Uint32Array | undefined;
}

/** Views over `bytes`, for {@link firstHighByte} and {@link elementText}. */
export function viewsOf(bytes: Uint8Array): ByteViews {
  return {
    of: bytes,
    bytes: bytes instanceof Buffer ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
    words: wordsOf(bytes),
  };
}

/** The index of the first byte above 0x7F in `[from, end)`, or `end`: four bytes at a time where it can. */
export function firstHighByte(views: ByteViews, from: number, end: number): number {
  return firstHigh(views.bytes, views.words, from, end);
}

/**
 * The text of the UTF-8 bytes `[from, to)`, or undefined when they are not UTF-8; `high` is the
 * first byte above 0x7F in them (`to` or beyond when there is none; {@link firstHighByte}). The
 * same text the fatal decoder gives, kept one byte a character when every character is U+00FF or
 * below.
 */
export function elementText(views: ByteViews, from: number, high: number, to: number): string | undefined {
  return spanText(views.bytes, from, high, to);
}
