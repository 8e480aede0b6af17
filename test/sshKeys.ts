// Key pairs for tests, drawn with ssh2's generator. That generator drops the leading zero bytes of an
// ed25519 public key, so about one pair in 256 is one ssh2 itself then refuses ("Malformed OpenSSH
// private key"; mscdex/ssh2 issues 1390 and 1513, open in 1.17.0): a cold CI run failed on one. A
// pair is drawn again until ssh2 reads both halves.
import { utils } from "ssh2";

export function generateKeyPair<K extends utils.KeyType>(type: K, options: utils.KeySettings[K] & utils.KeyPairOptions = {} as utils.KeySettings[K]): utils.KeyPairReturn {
  const passphrase = "passphrase" in options ? options.passphrase : undefined;
  for (;;) {
    const pair = utils.generateKeyPairSync(type, options);
    if (!(utils.parseKey(pair.public) instanceof Error) && !(utils.parseKey(pair.private, passphrase) instanceof Error)) return pair;
  }
}
