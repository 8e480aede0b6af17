import { execFileSync } from "child_process";
import fc from "fast-check";
import { mkdtempSync, rmSync, writeFileSync } from "fs";
import { tmpdir } from "os";
import { join } from "path";
import {
  LOADER_ENTRIES_SNIPPET,
  loaderEntryHasArgs,
  loaderEntryKernelVersion,
  parseLoaderEntries,
  parseLoaderEntry,
  planLoaderEntry,
  revertLoaderEntry,
} from "../../../providers/kernelCmdline/loaderEntries";
import { catFiles, filesFromSection } from "../../../providers/ssh/sections";
import { ensureArgs, kernelLineWithOwnKeys } from "./arbitraries";
import { debianSystemdBootEntry, fedoraBlsEntry, fedoraTunedBlsEntry, proxmoxEntry, rhel8BlsEntry } from "./fixtures";

const VFIO = ["intel_iommu=on", "iommu=pt"];

describe("parseLoaderEntry", () => {
  it("reads the keys kernel-install writes, comments skipped", () => {
    expect(parseLoaderEntry(debianSystemdBootEntry)).toEqual({
      title: "Debian GNU/Linux 12 (bookworm)",
      version: "6.1.0-18-amd64",
      linux: "/3f6d2c0a9e1b4c7d8a5e2f1b0c9d8e7f/6.1.0-18-amd64/linux",
      initrd: ["/3f6d2c0a9e1b4c7d8a5e2f1b0c9d8e7f/6.1.0-18-amd64/initrd.img-6.1.0-18-amd64"],
      options: ["root=UUID=6ad3a1f5-3b3c-4c4b-9b1f-3f1d2f0c1a2b ro quiet systemd.machine_id=3f6d2c0a9e1b4c7d8a5e2f1b0c9d8e7f"],
    });
  });

  it("keeps every options and initrd line, in order", () => {
    const entry = parseLoaderEntry("title t\r\noptions root=/dev/sda1\r\ninitrd /a\ninitrd /b\n  options\tquiet  \n");
    expect(entry.options).toEqual(["root=/dev/sda1", "quiet"]);
    expect(entry.initrd).toEqual(["/a", "/b"]);
  });

  it("gives the kernel version of each kind of entry", () => {
    expect(loaderEntryKernelVersion(proxmoxEntry)).toBe("6.8.12-4-pve");
    expect(loaderEntryKernelVersion(fedoraBlsEntry)).toBe("6.10.6-200.fc40.x86_64");
    expect(loaderEntryKernelVersion("title x\nlinux /vmlinuz\n")).toBeUndefined();
  });
});

describe("planLoaderEntry", () => {
  it("appends to the options of a systemd-boot entry, nothing else changes, and reverts to the bytes", () => {
    const plan = planLoaderEntry({ text: debianSystemdBootEntry, ensure: VFIO });
    expect(plan.text).toBe(debianSystemdBootEntry.replace("systemd.machine_id=3f6d2c0a9e1b4c7d8a5e2f1b0c9d8e7f\n", "systemd.machine_id=3f6d2c0a9e1b4c7d8a5e2f1b0c9d8e7f intel_iommu=on iommu=pt\n"));
    expect(plan.changes).toEqual(["+ intel_iommu=on", "+ iommu=pt"]);
    expect(revertLoaderEntry(plan.text, plan.owned)).toBe(debianSystemdBootEntry);
    expect(planLoaderEntry({ text: plan.text, ensure: VFIO, previouslyOwned: plan.owned })).toEqual({ ...plan, changes: [] });
  });

  it("edits Fedora's entry after $tuned_params, which GRUB expands at boot, and leaves grub_users alone", () => {
    const plan = planLoaderEntry({ text: fedoraTunedBlsEntry, ensure: VFIO });
    expect(parseLoaderEntry(plan.text).options).toEqual(["root=/dev/mapper/fedora-root ro rhgb quiet $tuned_params intel_iommu=on iommu=pt"]);
    expect(plan.text).toContain("grub_users $grub_users\n");
  });

  it("adds on the first options line, and takes removals from every line and replaces conflicting values there", () => {
    const text = "title t\noptions nomodeset root=/dev/sda1\nlinux /vmlinuz\noptions nomodeset quiet intel_iommu=off\n";
    const plan = planLoaderEntry({ text, ensure: VFIO, remove: ["nomodeset"] });
    expect(plan.text).toBe("title t\noptions root=/dev/sda1 intel_iommu=on iommu=pt\nlinux /vmlinuz\noptions quiet intel_iommu=on\n");
    expect(plan.changes).toEqual([
      "options line 1: - nomodeset",
      "options line 1: + intel_iommu=on",
      "options line 1: + iommu=pt",
      "options line 2: - nomodeset",
      "options line 2: intel_iommu=off -> intel_iommu=on",
    ]);
    expect(revertLoaderEntry(plan.text, plan.owned)).toBe(text);
  });

  it("leaves the options after a `--`, which go to init, as they are", () => {
    const text = "options root=/dev/sda1 -- single\noptions nomodeset\n";
    expect(planLoaderEntry({ text, ensure: ["iommu=pt"], remove: ["nomodeset"] }).text).toBe("options root=/dev/sda1 iommu=pt -- single\noptions nomodeset\n");
  });

  it("recognises its own args from the backup, line by line, after a run that died before recording them", () => {
    const text = "options root=/dev/sda1 intel_iommu=off\noptions intel_iommu=off\n";
    const plan = planLoaderEntry({ text, ensure: VFIO });
    const adopted = planLoaderEntry({ text: plan.text, ensure: VFIO, backup: text });
    expect(adopted.owned).toEqual(plan.owned);
    expect(revertLoaderEntry(plan.text, adopted.owned)).toBe(text);
    expect(planLoaderEntry({ text: plan.text, ensure: VFIO, backup: "options root=/dev/sda1\n" }).owned).toEqual([{ added: [], replaced: [], removed: [] }, { added: [], replaced: [], removed: [] }]);
  });

  it("adds to an options line that has no args yet", () => {
    const plan = planLoaderEntry({ text: "title t\noptions \nlinux /vmlinuz\n", ensure: ["iommu=pt"] });
    expect(plan.text).toBe("title t\noptions iommu=pt\nlinux /vmlinuz\n");
    expect(revertLoaderEntry(plan.text, plan.owned)).toBe("title t\noptions \nlinux /vmlinuz\n");
  });

  it("refuses RHEL 8's $kernelopts, whose args live in grubenv", () => {
    expect(() => planLoaderEntry({ text: rhel8BlsEntry, ensure: VFIO, path: "/boot/loader/entries/x.conf" })).toThrow(
      "/boot/loader/entries/x.conf: options refers to $kernelopts, which GRUB fills in from /boot/grub2/grubenv at boot, so the arguments are not in the entry, and " +
        "vfio-host edits entries, not grubenv: replace $kernelopts in each entry with the value `grub2-editenv - list` shows for kernelopts, then run this again",
    );
  });

  it("refuses an entry without options, where there is no command line to add to", () => {
    expect(() => planLoaderEntry({ text: "title t\nlinux /vmlinuz\n", ensure: VFIO })).toThrow("the loader entry has no options line");
    expect(() => planLoaderEntry({ text: "title t\noptions\n", ensure: VFIO })).toThrow('its first options line is a bare "options"');
  });
});

describe("loaderEntryHasArgs", () => {
  it("checks the options lines joined, the last value of a key winning", () => {
    expect(loaderEntryHasArgs(proxmoxEntry, VFIO, "proxmox-6.8.12-4-pve.conf")).toEqual({
      ok: false,
      problems: ["proxmox-6.8.12-4-pve.conf: options lack intel_iommu=on iommu=pt"],
    });
    expect(loaderEntryHasArgs("options intel_iommu=off\noptions intel_iommu=on iommu=pt\n", VFIO)).toEqual({ ok: true, problems: [] });
    expect(loaderEntryHasArgs("options intel_iommu=on iommu=pt\noptions intel_iommu=off\n", VFIO).ok).toBe(false);
  });

  it("fails on $kernelopts with the reason", () => {
    expect(loaderEntryHasArgs(rhel8BlsEntry, VFIO).problems[0]).toMatch(/^the loader entry: options refers to \$kernelopts/);
  });
});

/** A BLS entry with one to three options lines among the other keys, comments and blank lines. */
const entryFile = fc
  .record({
    options: fc.array(kernelLineWithOwnKeys.map((line) => line.replace(/\n/g, " ")), { minLength: 1, maxLength: 3 }),
    others: fc.array(fc.constantFrom("title Debian", "version 6.1.0-18-amd64", "linux /vmlinuz", "initrd /initrd.img", "# comment options x", "", "sort-key debian"), {
      minLength: 3,
      maxLength: 3,
    }),
    gap: fc.constantFrom(" ", "  ", "\t", "    "),
    finalNewline: fc.boolean(),
  })
  .map(({ options, others, gap, finalNewline }) => {
    const lines = options.flatMap((value, i) => [others[i] ?? "", `options${gap}${value}`]);
    return lines.join("\n") + (finalNewline ? "\n" : "");
  });

describe("planLoaderEntry properties", () => {
  it("revert(apply(entry)) restores the original bytes", () => {
    fc.assert(
      fc.property(entryFile, ensureArgs, (text, ensure) => {
        const plan = planLoaderEntry({ text, ensure, remove: ["nomodeset"] });
        expect(revertLoaderEntry(plan.text, plan.owned)).toBe(text);
      }),
    );
  });

  it("gives back the bytes of a line whose only arg it removed, trailing blank included (fast-check found this)", () => {
    const text = "title Debian\noptions \ntitle Debian\noptions nomodeset=1 \ntitle Debian\noptions ";
    const request = { ensure: ["pcie_acs_override=downstream"], remove: ["nomodeset"] };
    const once = planLoaderEntry({ text, ...request });
    const again = planLoaderEntry({ text: once.text, ...request, previouslyOwned: once.owned });
    expect(again).toEqual({ ...once, changes: [] });
    expect(revertLoaderEntry(again.text, again.owned)).toBe(text);
  });

  it("applying twice equals applying once", () => {
    fc.assert(
      fc.property(entryFile, ensureArgs, (text, ensure) => {
        const once = planLoaderEntry({ text, ensure, remove: ["nomodeset"] });
        expect(planLoaderEntry({ text: once.text, ensure, remove: ["nomodeset"], previouslyOwned: once.owned })).toEqual({ ...once, changes: [] });
      }),
    );
  });

  it("leaves every line but the options lines as it was, and the result has the args", () => {
    fc.assert(
      fc.property(entryFile, ensureArgs, (text, ensure) => {
        const planned = planLoaderEntry({ text, ensure, remove: ["nomodeset"] }).text;
        const others = (t: string) => t.split("\n").filter((line) => !line.startsWith("options"));
        expect(others(planned)).toEqual(others(text));
        expect(loaderEntryHasArgs(planned, ensure)).toEqual({ ok: true, problems: [] });
      }),
    );
  });
});

describe("reading the entries from the host", () => {
  it("catFiles and filesFromSection give back each file's path and bytes, names with spaces included", () => {
    const dir = mkdtempSync(join(tmpdir(), "loader-entries-"));
    try {
      writeFileSync(join(dir, "a b.conf"), "title a\noptions quiet\n");
      writeFileSync(join(dir, "proxmox-6.8.12-4-pve.conf"), proxmoxEntry);
      writeFileSync(join(dir, "ignored.txt"), "x");
      const section = execFileSync("sh", ["-c", catFiles(`'${dir}'/*.conf`)]).toString("utf8");
      expect(filesFromSection(section)).toEqual([
        { path: join(dir, "a b.conf"), text: "title a\noptions quiet\n" },
        { path: join(dir, "proxmox-6.8.12-4-pve.conf"), text: proxmoxEntry },
      ]);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  it("the entries snippet is valid sh and lists each directory once", () => {
    expect(() => execFileSync("sh", ["-n", "-c", LOADER_ENTRIES_SNIPPET])).not.toThrow();
    // This machine's own /boot, read only: whatever it holds, no path is listed twice.
    const paths = parseLoaderEntries(execFileSync("sh", ["-c", LOADER_ENTRIES_SNIPPET]).toString("utf8")).map((e) => e.path);
    expect(new Set(paths).size).toBe(paths.length);
  });
});
