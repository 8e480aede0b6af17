// Generators for kernel command lines and shell-sourced config files as users write them.
import fc from "fast-check";

/** Keys this project sets or removes; user args in the generators never use them unless asked. */
export const OWN_KEYS = ["intel_iommu", "amd_iommu", "iommu", "vfio_pci.ids", "pcie_acs_override", "nomodeset"];

const word = fc.stringMatching(/^[a-z][a-z0-9_]{0,7}$/).filter((w) => !OWN_KEYS.includes(w));
const value = fc.stringMatching(/^[A-Za-z0-9:,./=-]{0,12}$/);

/** One arg as a user writes it: flags, key=value, dotted module options, quoted values with spaces. */
export const userArg: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom("quiet", "splash", "ro", "rw", "single", "noapic"),
  fc.tuple(word, value).map(([k, v]) => `${k}=${v}`),
  fc.tuple(word, word, value).map(([m, p, v]) => `${m}.${p}=${v}`),
  fc.constantFrom("cryptroot=UUID=5f0d-4d3e:root", "root=/dev/mapper/vg0-root", "console=ttyS0,115200n8", "rootfstype=ext4"),
  fc.tuple(word, value, value).map(([k, a, b]) => `${k}="${a} ${b}"`),
);

const blank = fc.constantFrom(" ", " ", "  ", "\t", " \t ");

/** A line of user args with arbitrary spacing, optionally followed by `-- init args`. */
export function kernelLine(args: fc.Arbitrary<string> = userArg): fc.Arbitrary<string> {
  return fc
    .record({
      args: fc.array(args, { maxLength: 8 }),
      gaps: fc.array(blank, { minLength: 9, maxLength: 9 }),
      leading: fc.constantFrom("", "", " ", "\t"),
      trailing: fc.constantFrom("", "", " ", "  "),
      init: fc.constantFrom(undefined, undefined, "-- single", "-- --debug"),
    })
    .map(({ args, gaps, leading, trailing, init }) => {
      const tokens = init ? [...args, init] : args;
      return tokens.length === 0 ? leading + trailing : leading + tokens.map((t, i) => (i === 0 ? t : gaps[i] + t)).join("") + trailing;
    });
}

/** Args of ours with other values, to be replaced and restored. */
export const conflictingArg = fc.constantFrom("intel_iommu=off", "iommu=soft", "iommu=nopt", "intel_iommu=on,igfx_off", "vfio_pci.ids=10de:1c82");

/** A user line that may already carry our keys (with other or equal values) and args `remove` names. */
export const kernelLineWithOwnKeys = kernelLine(
  fc.oneof({ weight: 4, arbitrary: userArg }, { weight: 1, arbitrary: conflictingArg }, { weight: 1, arbitrary: fc.constantFrom("intel_iommu=on", "nomodeset", "nomodeset=1") }),
);

/** What a KernelCmdline resource asks for: unique keys. */
export const ensureArgs = fc.subarray(["intel_iommu=on", "iommu=pt", "vfio_pci.ids=8086:3a67,8086:3a68", "pcie_acs_override=downstream"], { minLength: 1 });

/** Shell comment and assignment lines that are not the variable under test. */
export const otherShellLine = fc.oneof(
  fc.constantFrom(
    "",
    "# If you change this file, run 'update-grub' afterwards",
    "GRUB_DEFAULT=0",
    "GRUB_TIMEOUT=5",
    "GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`",
    '#GRUB_CMDLINE_LINUX_DEFAULT="commented out"',
    "# you can see them in real GRUB with the command `vbeinfo'",
    'GRUB_CMDLINE_LINUX="console=tty0"',
    "export GRUB_DISABLE_OS_PROBER=false",
    "vesa_menu=0",
    "root=UUID=6ad3a1f5-3b3c-4c4b-9b1f-3f1d2f0c1a2b",
    "xen_opts=dom0_mem=384M",
    "  # indented comment with \"quotes\" and 'apostrophes",
  ),
  fc.stringMatching(/^# [ -~]{0,30}$/),
);

export type Quoting = "double" | "single" | "bare";

/** The assignment of `name` to `value` written in one of the ways people write it. */
export function shellAssignment(name: string, value: string): fc.Arbitrary<string> {
  const quotings: Quoting[] = /^[A-Za-z0-9_@%+=:,./-]*$/.test(value) ? ["double", "single", "bare"] : value.includes("'") ? ["double"] : ["double", "single"];
  return fc
    .record({
      quoting: fc.constantFrom(...quotings),
      indent: fc.constantFrom("", "", "  ", "\t"),
      exported: fc.boolean(),
      comment: fc.constantFrom("", "", " # set by the installer", "\t#keep"),
    })
    .map(({ quoting, indent, exported, comment }) => {
      const raw =
        quoting === "bare" ? value : quoting === "single" ? `'${value}'` : `"${value.replace(/[\\"$`]/g, "\\$&")}"`;
      return `${indent}${exported ? "export " : ""}${name}=${raw}${comment}`;
    });
}

/**
 * A config file around one variable: other lines before and after, maybe a stale earlier
 * assignment of it (the last one wins), maybe no assignment at all, with or without a final newline.
 */
export function shellFile(name: string, value: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc
    .record({
      before: fc.array(otherShellLine, { maxLength: 5 }),
      after: fc.array(otherShellLine, { maxLength: 5 }),
      stale: fc.option(fc.constantFrom(`${name}="stale value"`, `${name}=`), { nil: undefined }),
      assignment: fc.option(value.chain((v) => shellAssignment(name, v)), { nil: undefined, freq: 6 }),
      finalNewline: fc.boolean(),
    })
    .map(({ before, after, stale, assignment, finalNewline }) => {
      const lines = [...(stale ? [stale] : []), ...before, ...(assignment ? [assignment] : []), ...after];
      return lines.join("\n") + (finalNewline && lines.length > 0 ? "\n" : "");
    });
}
