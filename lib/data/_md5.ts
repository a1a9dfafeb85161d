/**
 * md5 (RFC 1321), streaming: WebCrypto has no md5, and the CIFAR-10 archive
 * publishes only its md5.
 *
 * @module
 */

const MD5_S = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];
const MD5_K = Int32Array.from({ length: 64 }, (_, i) => Math.floor(Math.abs(Math.sin(i + 1)) * 2 ** 32) | 0);

/** Streaming md5: `update` with chunks, then `hex` for the digest (RFC 1321). */
export class Md5 {
  #h = Int32Array.of(0x67452301, 0xefcdab89 | 0, 0x98badcfe | 0, 0x10325476);
  #block = new Uint8Array(64);
  #words = new Int32Array(16);
  #fill = 0;
  #length = 0;

  /** Adds `bytes` to the message. */
  update(bytes: Uint8Array): this {
    this.#length += bytes.length;
    let i = 0;
    if (this.#fill > 0) {
      const k = Math.min(64 - this.#fill, bytes.length);
      this.#block.set(bytes.subarray(0, k), this.#fill);
      this.#fill += k;
      i = k;
      if (this.#fill < 64) return this;
      this.#compress(this.#block, 0);
      this.#fill = 0;
    }
    for (; i + 64 <= bytes.length; i += 64) this.#compress(bytes, i);
    this.#block.set(bytes.subarray(i), 0);
    this.#fill = bytes.length - i;
    return this;
  }

  /** The digest as 32 lowercase hex digits (ends the hash; do not update after). */
  hex(): string {
    const bits = this.#length * 8;
    const pad = new Uint8Array((this.#fill < 56 ? 56 : 120) - this.#fill + 8);
    pad[0] = 0x80;
    const v = new DataView(pad.buffer);
    v.setUint32(pad.length - 8, bits >>> 0, true);
    v.setUint32(pad.length - 4, Math.floor(bits / 2 ** 32), true);
    this.update(pad);
    let out = "";
    for (const h of this.#h) {
      for (let b = 0; b < 4; b++) out += ((h >>> (8 * b)) & 0xff).toString(16).padStart(2, "0");
    }
    return out;
  }

  #compress(bytes: Uint8Array, at: number): void {
    const m = this.#words;
    for (let j = 0; j < 16; j++) {
      const p = at + 4 * j;
      m[j] = bytes[p] | (bytes[p + 1] << 8) | (bytes[p + 2] << 16) | (bytes[p + 3] << 24);
    }
    const h = this.#h;
    let a = h[0], b = h[1], c = h[2], d = h[3];
    for (let i = 0; i < 64; i++) {
      let f: number, g: number;
      if (i < 16) {
        f = (b & c) | (~b & d);
        g = i;
      } else if (i < 32) {
        f = (d & b) | (~d & c);
        g = (5 * i + 1) & 15;
      } else if (i < 48) {
        f = b ^ c ^ d;
        g = (3 * i + 5) & 15;
      } else {
        f = c ^ (b | ~d);
        g = (7 * i) & 15;
      }
      const s = MD5_S[(i >> 4) * 4 + (i & 3)];
      const t = (a + f + MD5_K[i] + m[g]) | 0;
      a = d;
      d = c;
      c = b;
      b = (b + ((t << s) | (t >>> (32 - s)))) | 0;
    }
    h[0] = (h[0] + a) | 0;
    h[1] = (h[1] + b) | 0;
    h[2] = (h[2] + c) | 0;
    h[3] = (h[3] + d) | 0;
  }
}
