import fc from "fast-check";
import { kernelCmdlineSeed, planKernelCmdlineFile, proxmoxBootToolRefresh, revertKernelCmdlineFile } from "../../../providers/kernelCmdline/kernelCmdlineFile";
import { ensureArgs, kernelLineWithOwnKeys } from "./arbitraries";
import { proxmoxKernelCmdline } from "./fixtures";

const VFIO = ["intel_iommu=on", "iommu=pt"];

describe("planKernelCmdlineFile on a Proxmox VE ZFS host's /etc/kernel/cmdline", () => {
  const plan = planKernelCmdlineFile({ text: proxmoxKernelCmdline, ensure: VFIO });

  it("appends the args to the one line and keeps its newline", () => {
    expect(plan.text).toBe("root=ZFS=rpool/ROOT/pve-1 boot=zfs intel_iommu=on iommu=pt\n");
    expect(plan.changes).toEqual(["+ intel_iommu=on", "+ iommu=pt"]);
  });

  it("gives back the original bytes on revert, and is a no-op the second time", () => {
    expect(revertKernelCmdlineFile(plan.text, plan.owned)).toBe(proxmoxKernelCmdline);
    expect(planKernelCmdlineFile({ text: plan.text, ensure: VFIO, previouslyOwned: plan.owned })).toEqual({ ...plan, changes: [] });
  });

  it("recognises its own args from the backup after a run that died before recording them", () => {
    const adopted = planKernelCmdlineFile({ text: plan.text, ensure: VFIO, backup: proxmoxKernelCmdline });
    expect(adopted.owned).toEqual(plan.owned);
    expect(revertKernelCmdlineFile(plan.text, adopted.owned)).toBe(proxmoxKernelCmdline);
  });
});

describe("planKernelCmdlineFile", () => {
  it("keeps a file without a final newline without one", () => {
    expect(planKernelCmdlineFile({ text: "root=/dev/sda1 ro", ensure: ["iommu=pt"] }).text).toBe("root=/dev/sda1 ro iommu=pt");
  });

  it("puts the args of an empty file on its first line, before the newline", () => {
    const plan = planKernelCmdlineFile({ text: "\n", ensure: VFIO });
    expect(plan.text).toBe("intel_iommu=on iommu=pt\n");
    expect(revertKernelCmdlineFile(plan.text, plan.owned)).toBe("\n");
  });

  it("replaces another value of our key and takes `remove`d args off", () => {
    const plan = planKernelCmdlineFile({ text: "root=/dev/sda1 intel_iommu=off nomodeset quiet\n", ensure: VFIO, remove: ["nomodeset"] });
    expect(plan.text).toBe("root=/dev/sda1 intel_iommu=on quiet iommu=pt\n");
    expect(plan.changes).toEqual(["intel_iommu=off -> intel_iommu=on", "- nomodeset", "+ iommu=pt"]);
  });

  it("refuses args on a second line, which proxmox-boot-tool would not read", () => {
    expect(() => planKernelCmdlineFile({ text: "root=/dev/sda1 ro\nquiet\n", ensure: VFIO })).toThrow(
      '/etc/kernel/cmdline has arguments on more than one line (the line break after "ro"); proxmox-boot-tool reads only the first line ' +
        'while kernel-install joins them all, so the two would boot different command lines. Put all the arguments on one line, e.g. "root=/dev/sda1 ro quiet"',
    );
    expect(() => planKernelCmdlineFile({ text: "\nroot=/dev/sda1\n", ensure: VFIO })).toThrow("(the line break before the first argument)");
  });
});

describe("kernelCmdlineSeed", () => {
  it("is /proc/cmdline without what the boot loader added, as kernel-install takes it", () => {
    expect(kernelCmdlineSeed("BOOT_IMAGE=/boot/vmlinuz-6.1.0-18-amd64 root=UUID=6ad3 ro quiet\n")).toBe("root=UUID=6ad3 ro quiet\n");
    expect(kernelCmdlineSeed("initrd=\\EFI\\proxmox\\6.8.12-4-pve\\initrd.img-6.8.12-4-pve root=ZFS=rpool/ROOT/pve-1 boot=zfs\n")).toBe(proxmoxKernelCmdline);
  });
});

describe("proxmoxBootToolRefresh", () => {
  it("is the command that rewrites the ESPs' entries from /etc/kernel/cmdline", () => {
    expect(proxmoxBootToolRefresh).toEqual(["proxmox-boot-tool", "refresh"]);
  });
});

/** A one-line /etc/kernel/cmdline as people leave it: with or without its newline, maybe blank. */
const cmdlineFile = fc.tuple(kernelLineWithOwnKeys, fc.constantFrom("", "\n", "\n\n")).map(([line, end]) => line.replace(/\n/g, " ") + end);

describe("planKernelCmdlineFile properties", () => {
  it("revert(apply(file)) restores the original bytes", () => {
    fc.assert(
      fc.property(cmdlineFile, ensureArgs, (text, ensure) => {
        const plan = planKernelCmdlineFile({ text, ensure, remove: ["nomodeset"] });
        expect(revertKernelCmdlineFile(plan.text, plan.owned)).toBe(text);
      }),
    );
  });

  it("applying twice equals applying once", () => {
    fc.assert(
      fc.property(cmdlineFile, ensureArgs, (text, ensure) => {
        const once = planKernelCmdlineFile({ text, ensure, remove: ["nomodeset"] });
        expect(planKernelCmdlineFile({ text: once.text, ensure, remove: ["nomodeset"], previouslyOwned: once.owned })).toEqual({ ...once, changes: [] });
      }),
    );
  });

  it("keeps the args on the first line and the file's ending as found", () => {
    fc.assert(
      fc.property(cmdlineFile, ensureArgs, (text, ensure) => {
        const planned = planKernelCmdlineFile({ text, ensure }).text;
        expect(planned.trimEnd()).not.toContain("\n");
        expect(planned.slice(planned.trimEnd().length).replace(/[ \t]/g, "")).toBe(text.slice(text.trimEnd().length).replace(/[ \t]/g, ""));
      }),
    );
  });
});
