/** CRC-32 (IEEE 802.3, as String::CRC32 and zlib), over the UTF-8 bytes of a string. */
const table = (() => {
  const t = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
    t[n] = c >>> 0
  }
  return t
})()

export const crc32 = (input: string | Uint8Array): number => {
  const bytes = typeof input === "string" ? Buffer.from(input, "utf8") : input
  let crc = 0xffffffff
  for (let i = 0; i < bytes.length; i++) crc = table[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8)
  return (crc ^ 0xffffffff) >>> 0
}

/**
 * The bucket Gearman::Client 1.11 picks for a unique key among `count` servers:
 * `((crc32(key) >> 16) & 0x7fff) % count`. Shards use the same rule so that clients in
 * other languages can mimic the choice.
 */
export const hashBucket = (key: string, count: number): number => ((crc32(key) >>> 16) & 0x7fff) % count
