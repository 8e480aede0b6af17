import { HostKey } from "../../../providers/ssh/hostKeys";
import { chooseKey, parseTrustArgs } from "../../../scripts/trust";

const fingerprint = "SHA256:pRif6pS47xcrW1dELlEDO8wLobjERTW4sbPFoBCtIvw";

describe("parseTrustArgs", () => {
  it("takes a stack, or a host and port, with how to confirm and which key", () => {
    expect(parseTrustArgs(["--stack", "myhost"])).toEqual({ target: { kind: "stack", stack: "myhost" }, yes: false });
    expect(parseTrustArgs(["--host", "192.0.2.10", "--port", "2222", "--expect", `${fingerprint}=`, "--type", "rsa", "--yes"])).toEqual({
      target: { kind: "host", host: "192.0.2.10", port: 2222 },
      expect: fingerprint,
      type: "rsa",
      yes: true,
    });
    expect(parseTrustArgs(["--host", "h"])).toMatchObject({ target: { kind: "host", host: "h", port: 22 } });
    expect(parseTrustArgs(["-h"])).toBe("help");
  });

  it("says what is wrong with the command line", () => {
    expect(() => parseTrustArgs([])).toThrow("Say where to connect: exactly one of --stack NAME or --host HOST");
    expect(() => parseTrustArgs(["--stack", "s", "--host", "h"])).toThrow("exactly one of");
    expect(() => parseTrustArgs(["--stack", "s", "--port", "22"])).toThrow("--port goes with --host; --stack reads vfio-host:port");
    expect(() => parseTrustArgs(["--host", "h", "--port", "0"])).toThrow('--port "0" is not a port number from 1 to 65535');
    expect(() => parseTrustArgs(["--stack", "s", "--expect", "MD5:aa:bb"])).toThrow('--expect "MD5:aa:bb" is not a fingerprint such as SHA256:');
    expect(() => parseTrustArgs(["--stack", "s", "--type", "dsa"])).toThrow('--type "dsa" is not one of ed25519, ecdsa, rsa');
    expect(() => parseTrustArgs(["--stack", "s", "--yse"])).toThrow("Unknown option '--yse'");
  });
});

describe("chooseKey", () => {
  const key = (name: string, n: number): HostKey => ({ name, keyType: name.toLowerCase(), line: `${name} AAAA${n}`, bits: 256, fingerprint: `SHA256:${String(n).repeat(43).slice(0, 43)}` });
  const keys = [key("ED25519", 1), key("ECDSA", 2), key("RSA", 3)];

  it("takes the key with the expected fingerprint, else the type asked for, else the first", () => {
    expect(chooseKey(keys, { expect: keys[2].fingerprint }, "h:22")).toBe(keys[2]);
    expect(chooseKey(keys, { type: "ecdsa" }, "h:22")).toBe(keys[1]);
    expect(chooseKey(keys, {}, "h:22")).toBe(keys[0]);
  });

  it("refuses a fingerprint none of the keys has, or a type the host lacks", () => {
    expect(() => chooseKey(keys, { expect: fingerprint }, "h:22")).toThrow(`none of the keys h:22 offers has the fingerprint ${fingerprint}; nothing was pinned.`);
    expect(() => chooseKey(keys, { expect: keys[2].fingerprint, type: "ed25519" }, "h:22")).toThrow("(of type ed25519)");
    expect(() => chooseKey(keys.slice(0, 2), { type: "rsa" }, "h:22")).toThrow("h:22 offers no rsa key; nothing was pinned");
  });
});
