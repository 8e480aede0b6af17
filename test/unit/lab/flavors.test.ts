// Lab flavours: `lab.sh recipe` gives build-image.sh as one flavour runs it (its `#@flavor` blocks
// and the common lines), and each flavour's image is keyed by exactly that recipe plus guest/ and
// its guest-<flavour>/, so editing one flavour's lines rebuilds only its image. Everything runs on
// copies of scripts/lab in a scratch directory, with a scratch cache; nothing is built or booted.
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import fc from "fast-check";
import { labFlavors, labInstanceEnv, LabStateSchema, labStatePath } from "../../../scripts/lab/labState";

const labDir = path.join(__dirname, "../../../scripts/lab");
const sources = path.join(__dirname, "fixtures/deb822/etc/apt/sources.list.d/debian.sources");
const scratch = mkdtempSync(path.join(tmpdir(), "lab-flavors-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A copy of scripts/lab whose build-image.sh is SCRIPT (the real one when not given). */
function labCopy(script?: string): string {
  const dir = mkdtempSync(path.join(scratch, "lab-"));
  cpSync(labDir, dir, { recursive: true });
  if (script !== undefined) writeFileSync(path.join(dir, "build-image.sh"), script);
  return dir;
}

function lab(dir: string, args: string[], env: Record<string, string> = {}) {
  const { LAB_STATE: _state, LAB_FLAVOR: _flavor, ...inherited } = process.env;
  const cache = path.join(dir, "cache");
  const result = spawnSync("bash", [path.join(dir, "lab.sh"), ...args], {
    encoding: "utf8",
    env: { ...inherited, VFIO_HOST_CACHE: cache, LAB_APT_SOURCES: sources, ...env },
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr, cache };
}

/** The name of the image directory `status` names for FLAVOR (the lab is stopped in a scratch cache). */
function imageDir(dir: string, flavor: string): string {
  const { status, stdout, stderr } = lab(dir, ["status", "--flavor", flavor]);
  expect({ status, stderr }).toEqual({ status: 0, stderr: "" });
  const match = stdout.match(new RegExp(`^image \\(${flavor}\\): (.*)/base\\.qcow2 \\(not built yet\\)$`, "m"));
  expect(match).not.toBeNull();
  return path.basename(match![1]);
}

const realScript = readFileSync(path.join(labDir, "build-image.sh"), "utf8");

/** The real script's blocks: the index of each line inside one, and the flavours the block names. */
function blocks(script: string): { line: number; flavors: string[] }[] {
  const lines = script.split("\n");
  const inside: { line: number; flavors: string[] }[] = [];
  let open: string[] | undefined;
  lines.forEach((text, line) => {
    if (text.startsWith("#@flavor ")) open = text.split(" ").slice(1);
    else if (text === "#@end") open = undefined;
    else if (open) inside.push({ line, flavors: open });
  });
  return inside;
}

describe("lab.sh recipe", () => {
  it.each(labFlavors)("%s: a script bash can parse, with no #@ lines left", (flavor) => {
    const { status, stdout, stderr } = lab(labCopy(), ["recipe", "--flavor", flavor]);
    expect({ status, stderr }).toEqual({ status: 0, stderr: "" });
    expect(stdout).not.toMatch(/^#@/m);
    expect(spawnSync("bash", ["-n"], { input: stdout }).status).toBe(0);
  });

  it("each flavour runs its own boot stack's steps and none of the others'", () => {
    const recipe = (flavor: string) =>
      lab(labCopy(), ["recipe", "--flavor", flavor])
        .stdout.split("\n")
        .filter((line) => !/^\s*#/.test(line))
        .join("\n");
    expect(recipe("grub")).toMatch(/grub-pc[\s\S]*grub-install/);
    expect(recipe("sdboot-dracut")).toMatch(/systemd-boot dracut[\s\S]*etc\/kernel\/cmdline[\s\S]*--label gpt/);
    expect(recipe("extlinux")).toMatch(/extlinux syslinux-common initramfs-tools[\s\S]*extlinux\.conf[\s\S]*--label dos/);
    expect(recipe("grub")).not.toMatch(/bootctl|dracut|extlinux|guest-/);
    expect(recipe("sdboot-dracut")).not.toMatch(/grub|initramfs-tools|extlinux|libvirt/);
    expect(recipe("extlinux")).not.toMatch(/grub|dracut|bootctl|libvirt/);
  });

  it("keeps the lines of blocks naming the flavour and the common ones, in order, on any layout of blocks", () => {
    const line = fc.stringMatching(/^[a-z][a-z =]{0,12}$/);
    const block = fc.record({ flavors: fc.subarray([...labFlavors], { minLength: 1 }), lines: fc.array(line, { maxLength: 3 }) });
    const part = fc.oneof(line.map((text) => ({ common: text })), block);
    fc.assert(
      fc.property(fc.array(part, { maxLength: 8 }), fc.constantFrom(...labFlavors), (parts, flavor) => {
        const script = parts.map((p) => ("common" in p ? `${p.common}\n` : `#@flavor ${p.flavors.join(" ")}\n${p.lines.map((l) => `${l}\n`).join("")}#@end\n`)).join("");
        const expected = parts.flatMap((p) => ("common" in p ? [p.common] : p.flavors.includes(flavor) ? p.lines : []));
        const dir = labCopy(script);
        expect(lab(dir, ["recipe", "--flavor", flavor]).stdout).toBe(expected.map((l) => `${l}\n`).join(""));
        rmSync(dir, { recursive: true });
      }),
      { numRuns: 10 },
    );
  });

  it.each([
    ["an unknown flavour", "a\n#@flavor grub sdbot\nb\n#@end\n", "build-image.sh:2: unknown flavour sdbot (known: grub sdboot-dracut extlinux)"],
    ["a block naming none", "#@flavor\nb\n#@end\n", "build-image.sh:1: #@flavor names no flavour"],
    ["a nested block", "#@flavor grub\n#@flavor extlinux\n#@end\n#@end\n", "build-image.sh:2: #@flavor inside the block of line 1"],
    ["an open block", "a\n#@flavor grub\nb\n", "build-image.sh:2: #@flavor block without #@end"],
    ["a stray #@end", "a\n#@end\n", "build-image.sh:2: #@end without #@flavor"],
  ])("refuses %s, naming the line, in recipe and in the image key", (_name, script, message) => {
    const dir = labCopy(script);
    for (const args of [["recipe"], ["status", "--flavor", "extlinux"]]) {
      const result = lab(dir, args);
      expect(result.status).not.toBe(0);
      expect(result.stderr).toContain(message);
    }
  });
});

describe("lab.sh flavour images and instances", () => {
  it("an edited line of a block changes the image key of exactly the flavours it names; a common line changes all", () => {
    const lines = realScript.split("\n");
    const inBlocks = blocks(realScript);
    const commonLine = lines.findIndex((text) => text.startsWith("mmdebstrap "));
    const before = labCopy();
    const keys = Object.fromEntries(labFlavors.map((flavor) => [flavor, imageDir(before, flavor)]));
    const edit = fc.oneof(fc.constantFrom(...inBlocks), fc.constant({ line: commonLine, flavors: [...labFlavors] }));
    fc.assert(
      fc.property(edit, ({ line, flavors }) => {
        const edited = lines.map((text, i) => (i === line ? `${text} # edited` : text)).join("\n");
        const dir = labCopy(edited);
        for (const flavor of labFlavors) {
          expect([flavor, imageDir(dir, flavor) === keys[flavor]]).toEqual([flavor, !flavors.includes(flavor)]);
        }
        rmSync(dir, { recursive: true });
      }),
      { numRuns: 8 },
    );
  }, 60_000);

  it("names grub's image lab-<hash> as before flavours, the others lab-<flavour>-<hash>, keyed by their guest-<flavour>/ too", () => {
    const dir = labCopy();
    expect(imageDir(dir, "grub")).toMatch(/^lab-[0-9a-f]{16}$/);
    const sdboot = imageDir(dir, "sdboot-dracut");
    expect(sdboot).toMatch(/^lab-sdboot-dracut-[0-9a-f]{16}$/);
    const grub = imageDir(dir, "grub");
    writeFileSync(path.join(dir, "guest-sdboot-dracut/etc/dracut.conf.d/lab.conf"), "hostonly=no\n");
    expect(imageDir(dir, "sdboot-dracut")).not.toBe(sdboot);
    expect(imageDir(dir, "grub")).toBe(grub);
  });

  it("keeps one state directory per flavour unless LAB_STATE names one", () => {
    const dir = labCopy();
    const { cache } = lab(dir, ["status", "--flavor", "sdboot-dracut"]);
    lab(dir, ["status"], { LAB_FLAVOR: "extlinux" });
    lab(dir, ["status"]);
    expect(["lab-state", "lab-state-sdboot-dracut", "lab-state-extlinux"].map((name) => existsSync(path.join(cache, name)))).toEqual([true, true, true]);
  });

  it.each([
    [["status", "--flavor", "systemd-boot"], {}, "[lab] --flavor systemd-boot: no such lab flavour; use one of: grub sdboot-dracut extlinux\n"],
    [["status", "--flavor=uefi"], {}, "[lab] --flavor=uefi: no such lab flavour; use one of: grub sdboot-dracut extlinux\n"],
    [["status"], { LAB_FLAVOR: "syslinux" }, "[lab] LAB_FLAVOR=syslinux: no such lab flavour; use one of: grub sdboot-dracut extlinux\n"],
    [["status", "--flavor"], {}, "[lab] --flavor needs a name: grub sdboot-dracut extlinux\n"],
  ])("refuses %j %j, naming where the name came from and the flavours there are", (args, env, message) => {
    expect(lab(labCopy(), args, env)).toMatchObject({ status: 1, stderr: message });
  });
});

describe("labState", () => {
  const fields = {
    host: "127.0.0.1",
    port: 2222,
    user: "root",
    privateKeyPath: "/k",
    hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOTdWiy0WcYJ4kE0qzbpXfYq2vvvzU4kKqRyT8yAhmSx",
    pid: 1,
    accel: "tcg",
    overlay: "/o",
    image: "/i",
    serialLog: "/s",
    bootSeconds: 1,
    startedAt: "2024-01-01T00:00:00Z",
  };

  it("reads a lab.json from before flavours as grub, and refuses a flavour lab.sh does not make", () => {
    expect(LabStateSchema.parse(fields).flavor).toBe("grub");
    expect(LabStateSchema.parse({ ...fields, flavor: "sdboot-dracut" }).flavor).toBe("sdboot-dracut");
    expect(() => LabStateSchema.parse({ ...fields, flavor: "uefi" })).toThrow();
  });

  it("finds each flavour's state where lab.sh keeps it; grub's paths are those from before flavours", () => {
    const env = { VFIO_HOST_CACHE: "/c" };
    expect(labStatePath(env)).toBe("/c/lab-state/lab.json");
    expect(labStatePath({ ...env, LAB_FLAVOR: "extlinux" })).toBe("/c/lab-state-extlinux/lab.json");
    expect(labStatePath({ ...env, LAB_FLAVOR: "extlinux", LAB_STATE: "/s" })).toBe("/s/lab.json");
    expect(() => labStatePath({ ...env, LAB_FLAVOR: "uefi" })).toThrow("LAB_FLAVOR=uefi: no such lab flavour; use one of: grub sdboot-dracut extlinux");
  });

  it("gives a suite's instance a state directory per flavour", () => {
    const saved = { ...process.env };
    try {
      process.env.VFIO_HOST_CACHE = "/c";
      delete process.env.LAB_FLAVOR;
      expect(labInstanceEnv("host-test")).toMatchObject({ LAB_FLAVOR: "grub", LAB_STATE: "/c/lab-host-test" });
      process.env.LAB_FLAVOR = "sdboot-dracut";
      expect(labInstanceEnv("host-test")).toMatchObject({ LAB_FLAVOR: "sdboot-dracut", LAB_STATE: "/c/lab-host-test-sdboot-dracut" });
    } finally {
      process.env = saved;
    }
  });
});
