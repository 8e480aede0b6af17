// Key pairs for tests, drawn with ssh2's generator. That generator drops the leading zero bytes of an
// ed25519 public key, so about one pair in 256 is one ssh2 itself then refuses ("Malformed OpenSSH
// private key"; mscdex/ssh2 issues 1390 and 1513, open in 1.17.0): a cold CI run failed on one. A
// pair is drawn again until ssh2 reads both halves.
import { utils } from "ssh2";

type KeySettings = { ed25519: object; ecdsa: { bits: 256 | 384 | 521 }; rsa: { bits: number } };
type Encryption = { passphrase: string; cipher: string; rounds: number };

export function generateKeyPair<K extends keyof KeySettings>(type: K, options?: KeySettings[K] & Partial<Encryption>): utils.KeyPairReturn {
  const generate = utils.generateKeyPairSync as (type: K, options?: object) => utils.KeyPairReturn;
  for (;;) {
    const pair = generate(type, options);
    if (!(utils.parseKey(pair.public) instanceof Error) && !(utils.parseKey(pair.private, options?.passphrase) instanceof Error)) return pair;
  }
}
