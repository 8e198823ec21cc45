// Helia's storage stack against the dscluster S3 gateway: blockstore-s3 (Helia's S3
// blockstore) with the Kubo key layout `dscfg ipfs` prints, and the UnixFS importer and
// exporter Helia's @helia/unixfs uses. Driven by tests/integration/test_helia.py.
//
//   node helia_s3.mjs ENDPOINT ACCESS_KEY SECRET_KEY BUCKET add FILE   -> prints the CID
//   node helia_s3.mjs ENDPOINT ACCESS_KEY SECRET_KEY BUCKET cat CID    -> the bytes on stdout
import { createReadStream } from 'node:fs'
import { S3 } from '@aws-sdk/client-s3'
import { S3Blockstore } from 'blockstore-s3'
import { exporter } from 'ipfs-unixfs-exporter'
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'
import { base32upper } from 'multiformats/bases/base32'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'

const [endpoint, accessKeyId, secretAccessKey, bucket, command, arg] = process.argv.slice(2)

const s3 = new S3({
  endpoint,
  region: 'us-east-1',
  forcePathStyle: true,
  credentials: { accessKeyId, secretAccessKey }
})

// the key layout of doc/ipfs.md: Kubo's block keys, so Helia, Kubo and dsclient share blocks
const kuboKeys = {
  extension: '',
  encode: (cid) => base32upper.encoder.baseEncode(cid.multihash.bytes),
  decode: (key) => CID.createV1(0x55,
    Digest.decode(base32upper.decoder.baseDecode(key.split('/').pop())))
}

const blockstore = new S3Blockstore(s3, bucket, { shardingStrategy: kuboKeys })
await blockstore.open()

if (command === 'add') {
  // `ipfs add`'s defaults, as Kubo spells them in ipfs-unixfs-importer's options
  const options = {
    cidVersion: 0,
    rawLeaves: false,
    leafType: 'file',
    reduceSingleLeafToSelf: true,
    chunker: fixedSize({ chunkSize: 262144 }),
    layout: balanced({ maxChildrenPerNode: 174 })
  }
  let root
  for await (const entry of importer([{ content: createReadStream(arg) }], blockstore, options)) {
    root = entry.cid
  }
  process.stdout.write(root.toString() + '\n')
} else if (command === 'cat') {
  const entry = await exporter(CID.parse(arg), blockstore)
  for await (const chunk of entry.content()) {
    process.stdout.write(chunk)
  }
} else {
  throw new Error(`unknown command ${command}`)
}
