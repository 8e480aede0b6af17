import { spawnSync } from "child_process";
import fc from "fast-check";
import { describeCommand, shellCommand, shellQuote } from "../../../providers/ssh/quote";

// The script goes to sh on stdin, as bytes, the way it reaches the remote shell over SSH.
function runSh(script: Buffer): Buffer {
  const result = spawnSync("/bin/sh", ["-s"], { input: script });
  expect(result.status).toBe(0);
  return result.stdout;
}

const bytesWithoutNul = fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a.filter((b) => b !== 0)));

describe("shellQuote", () => {
  it("round-trips any byte string through /bin/sh", () => {
    fc.assert(
      fc.property(bytesWithoutNul, (bytes) => {
        const out = runSh(Buffer.concat([Buffer.from("printf %s "), shellQuote(bytes)]));
        expect(out.equals(bytes)).toBe(true);
      }),
      { numRuns: 200 },
    );
  });

  it("keeps every word of an argv separate, whatever it contains", () => {
    fc.assert(
      fc.property(fc.array(fc.string({ unit: "binary" }).filter((s) => !s.includes("\0")), { maxLength: 5 }), (words) => {
        const script = shellCommand(["printf", "%s\\0", ...words]);
        const out = runSh(script).toString("utf8");
        const expected = words.length === 0 ? "\0" : words.map((w) => w + "\0").join("");
        expect(out).toBe(expected);
      }),
      { numRuns: 100 },
    );
  });

  it("neutralises shell syntax", () => {
    const hostile = `$(touch /tmp/pwned) \`id\` ; rm -rf / 'x' "y" \n*`;
    expect(runSh(Buffer.concat([Buffer.from("printf %s "), shellQuote(hostile)])).toString()).toBe(hostile);
  });

  it("refuses a NUL byte, which no argv can carry", () => {
    expect(() => shellQuote("a\0b")).toThrow("A shell argument cannot contain a NUL byte");
  });

  it("describes commands readably, quoting only what needs it", () => {
    expect(describeCommand(["update-grub"])).toBe("update-grub");
    expect(describeCommand(["cat", "/etc/my file"])).toBe("cat '/etc/my file'");
  });
});
