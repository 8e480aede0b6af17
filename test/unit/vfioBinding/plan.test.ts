import { renderModprobeConf } from "../../../providers/vfioBinding/modprobeConf";
import { planVfioBinding } from "../../../providers/vfioBinding/plan";
import { VfioBindingInputs } from "../../../providers/vfioBinding/schema";
import { alpine515Kernel as alpine515 } from "../initramfsModules/fixtures";
import { labFacts, referenceFacts } from "./fixtures";

const inputs = (raw: object) => VfioBindingInputs.parse(raw);

describe("planVfioBinding", () => {
  it("plans the reference host's /etc/modprobe.d/vfio.conf", () => {
    const plan = planVfioBinding({
      inputs: inputs({ devices: ["8086:3a67", "8086:3a68", "8086:3a69", "8086:3a6c"], allowUnsafeInterrupts: true }),
      facts: referenceFacts,
      kernel: alpine515,
      modprobe: "busybox",
    });
    expect(plan).toMatchObject({
      ok: true,
      content: renderModprobeConf({ ids: ["8086:3a67", "8086:3a68", "8086:3a69", "8086:3a6c"], softdepDrivers: ["ehci_pci", "uhci_hcd"], allowUnsafeInterrupts: true }),
      changes: [
        "create /etc/modprobe.d/vfio.conf",
        "ids: + 8086:3a67",
        "ids: + 8086:3a68",
        "ids: + 8086:3a69",
        "ids: + 8086:3a6c",
        "softdep: + ehci_pci",
        "softdep: + uhci_hcd",
        "allow_unsafe_interrupts: 0 -> 1",
      ],
      kernelArgs: [],
      warnings: [],
    });
  });

  it("reports no change when the file on the host is the planned one", () => {
    const request = { inputs: inputs({ iommuGroups: [4] }), facts: referenceFacts, kernel: alpine515, modprobe: "kmod" as const };
    const first = planVfioBinding(request);
    expect(first.ok && planVfioBinding({ ...request, currentConf: first.content })).toMatchObject({ ok: true, changes: [] });
  });

  it("refuses bindBy address where busybox modprobe ignores install lines", () => {
    expect(planVfioBinding({ inputs: inputs({ iommuGroups: [4], bindBy: "address" }), facts: referenceFacts, kernel: alpine515, modprobe: "busybox" })).toEqual({
      ok: false,
      errors: [
        'bindBy: "address" needs modprobe to run an `install` command in the initramfs (kmod does); this host\'s initramfs uses busybox modprobe, which ignores `install` lines, so nothing would set driver_override. Use bindBy: "ids"',
      ],
      warnings: [],
    });
  });

  it("writes the driver_override install line for bindBy address with kmod", () => {
    const plan = planVfioBinding({ inputs: inputs({ iommuGroups: [4], bindBy: "address" }), facts: labFacts, kernel: alpine515, modprobe: "kmod" });
    expect(plan.ok && plan.content.split("\n")[3]).toBe(
      "install vfio-pci for dev in 0000:00:1d.0 0000:00:1d.1 0000:00:1d.2 0000:00:1d.7; do echo vfio-pci > /sys/bus/pci/devices/$dev/driver_override; done; /sbin/modprobe --ignore-install vfio-pci $CMDLINE_OPTS",
    );
  });

  it("refuses devices whose host driver is built in, which vfio-pci can never beat", () => {
    const kernel = { ...alpine515, builtin: { ehci_pci: "kernel/drivers/usb/host/ehci-pci.ko" } };
    expect(planVfioBinding({ inputs: inputs({ iommuGroups: [4] }), facts: labFacts, kernel, modprobe: "kmod" })).toEqual({
      ok: false,
      errors: [
        "0000:00:1d.7 (8086:293a) is driven by ehci_pci, which kernel 5.15.74-0-lts builds in: it claims it before vfio-pci (a module) can load, and softdep cannot change that. Boot a kernel that builds ehci_pci as a module",
      ],
      warnings: [],
    });
  });

  it("moves the options of a built-in vfio_pci to the kernel command line", () => {
    const kernel = { ...alpine515, builtin: { vfio_pci: "kernel/drivers/vfio/pci/vfio-pci.ko" } };
    const plan = planVfioBinding({ inputs: inputs({ iommuGroups: [4] }), facts: labFacts, kernel, modprobe: "kmod" });
    expect(plan).toMatchObject({
      ok: true,
      kernelArgs: ["vfio_pci.ids=8086:2934,8086:2935,8086:2936,8086:293a"],
      warnings: [
        "kernel 5.15.74-0-lts builds in vfio_pci, so /etc/modprobe.d options do not reach it; KernelCmdline's args must carry vfio_pci.ids=8086:2934,8086:2935,8086:2936,8086:293a",
      ],
    });
  });

  it("passes the selection's errors through", () => {
    expect(planVfioBinding({ inputs: inputs({ devices: ["8086:2934"] }), facts: labFacts, kernel: alpine515, modprobe: "kmod" })).toMatchObject({
      ok: false,
      errors: [
        "IOMMU group 4 is only partly selected: 0000:00:1d.1 (8086:2935), 0000:00:1d.2 (8086:2936) and 0000:00:1d.7 (8086:293a) are not in `devices`; add them, or acknowledge them in `acknowledgeGroupMembers`",
      ],
    });
  });
});
