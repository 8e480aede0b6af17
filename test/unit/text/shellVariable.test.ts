import {
  encodeShellValue,
  findShellAssignments,
  readShellVariable,
  shellVariableValue,
} from "../../../providers/text/shellVariable";
import { debianDefaultGrub } from "../kernelCmdline/fixtures";

const spec = { name: "X", source: "/etc/x.conf", example: 'X="quiet splash"' };
const names = (text: string) => findShellAssignments(text, "/etc/x.conf").map((a) => `${a.name}${a.conditional ? "?" : ""}`);

describe("findShellAssignments", () => {
  it("finds the assignments of Debian's /etc/default/grub, backquotes and comments included", () => {
    expect(names(debianDefaultGrub)).toEqual([
      "GRUB_DEFAULT",
      "GRUB_TIMEOUT",
      "GRUB_DISTRIBUTOR",
      "GRUB_CMDLINE_LINUX_DEFAULT",
      "GRUB_CMDLINE_LINUX",
    ]);
  });

  it("skips environment prefixes of commands, and sees export and several per line", () => {
    expect(names("A=1 some_command\nexport B=2 C=3\nD=4; E=5\nF=6 G=7\n")).toEqual(["B", "C", "D", "E", "F", "G"]);
  });

  it("marks assignments inside if/case/functions or after && and || as conditional", () => {
    const text = [
      'if [ -e /etc/foo ]; then',
      '  A="x"',
      "fi",
      "B=1",
      "[ -e /x ] && C=2",
      "f() { D=3; }",
      'case "$x" in a) E=4;; esac',
      "F=5",
    ].join("\n");
    expect(names(text)).toEqual(["A?", "B", "C?", "D?", "E?", "F"]);
  });

  it("does not take quoted or substituted text for assignments", () => {
    expect(names('A="\nB=1\n"\nC=$(echo D=2; E=3)\nF=`G=4`\n')).toEqual(["A", "C", "F"]);
  });

  it("refuses a file whose quote never closes, naming the line", () => {
    expect(() => findShellAssignments('A=1\nB="open\n', "/etc/default/grub")).toThrow(
      "/etc/default/grub line 2: a double-quoted string never ends; fix the file so that `sh -n /etc/default/grub` accepts it",
    );
  });
});

describe("readShellVariable", () => {
  it("takes the last assignment, as the shell does", () => {
    expect(shellVariableValue('X="first"\n# X="comment"\nX=\'second\'\n', spec)).toBe("second");
  });

  it("decodes double-quoted escapes", () => {
    expect(shellVariableValue('X="a \\"b c\\" \\$HOME"', spec)).toBe('a "b c" $HOME');
  });

  it("refuses a conditional assignment with the line and a good example", () => {
    expect(() => readShellVariable('if true; then\n  X="a"\nfi\n', spec)).toThrow(
      '/etc/x.conf line 2: X is assigned inside a condition, loop or function, so which value wins is only known when the shell runs it; move it to a line of its own outside the block, e.g. X="quiet splash"',
    );
  });

  it("refuses a value the shell computes", () => {
    expect(() => shellVariableValue('X="$X iommu=pt"\n', spec)).toThrow(
      '/etc/x.conf line 1: X="$X iommu=pt" expands $ or ` when the shell reads it, so its value cannot be edited safely; write the value out in one quoted string, e.g. X="quiet splash"',
    );
  });

  it("tells rewritable values from ones that re-encode differently", () => {
    expect(readShellVariable('X="a b"', spec)?.rewritable).toBe(true);
    expect(readShellVariable("X='a b'", spec)?.rewritable).toBe(true);
    expect(readShellVariable("X=quiet", spec)?.rewritable).toBe(true);
    expect(readShellVariable("X=\"a\"' b'", spec)?.rewritable).toBe(false);
    expect(readShellVariable('X="a\\ b"', spec)?.rewritable).toBe(false);
  });
});

describe("encodeShellValue", () => {
  it("keeps the preferred quoting when the value allows it", () => {
    expect(encodeShellValue("quiet", "bare")).toBe("quiet");
    expect(encodeShellValue("quiet iommu=pt", "bare")).toBe('"quiet iommu=pt"');
    expect(encodeShellValue("a b", "single")).toBe("'a b'");
    expect(encodeShellValue("it's", "single")).toBe('"it\'s"');
    expect(encodeShellValue('a "b" $c `d` \\', "double")).toBe('"a \\"b\\" \\$c \\`d\\` \\\\"');
  });
});
