import fc from "fast-check";
import { kernelArgKey } from "../../../providers/kernel/cmdline";
import { renderModprobeConf } from "../../../providers/vfioBinding/modprobeConf";
import { planVfioBinding, VfioBindingRequest } from "../../../providers/vfioBinding/plan";
import { VfioBindingInputs } from "../../../providers/vfioBinding/schema";
import { userArg } from "../kernelCmdline/arbitraries";
import { alpine515Kernel as alpine515, debianKernel } from "../initramfsModules/fixtures";
import { labFacts, referenceFacts, remappingOff, remappingOn, vfioBuiltInKernel } from "./fixtures";

const inputs = (raw: object) => VfioBindingInputs.parse(raw);

describe("planVfioBinding", () => {
  it("plans the reference host's /etc/modprobe.d/vfio.conf", () => {
    const plan = planVfioBinding({
      inputs: inputs({ devices: ["8086:3a67", "8086:3a68", "8086:3a69", "8086:3a6c"], allowUnsafeInterrupts: true }),
      facts: referenceFacts, interruptRemapping: remappingOff,
      kernel: alpine515,
      modprobe: "busybox",
      kernelArgs: [],
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
      warnings: [
        "Interrupt remapping is off (dmar0 (ecap 1000) cannot remap interrupts (bit 3 of the extended capabilities is clear)); passed over " +
          "because vfio-host:vfio.allowUnsafeInterrupts is true: a guest can inject interrupts into the host",
      ],
    });
  });

  it("refuses devices whose interrupts the IOMMU cannot remap until allowUnsafeInterrupts accepts it, and says when that is not known yet", () => {
    const request = { inputs: inputs({ iommuGroups: [4] }), facts: referenceFacts, kernel: alpine515, modprobe: "busybox" as const, kernelArgs: [] };
    expect(planVfioBinding({ ...request, interruptRemapping: remappingOff })).toEqual({
      ok: false,
      key: "selection",
      errors: [
        "Interrupt remapping is off on this host although its IOMMU is on: dmar0 (ecap 1000) cannot remap interrupts (bit 3 of the extended " +
          'capabilities is clear). vfio_iommu_type1 then refuses to attach the devices ("No interrupt remapping support"), unless told to ' +
          "accept that a guest can inject interrupts into the host: set vfio-host:vfio.allowUnsafeInterrupts to true to accept it, or turn " +
          "interrupt remapping on (a firmware update or setting; drop intremap=off from the kernel command line)",
      ],
      warnings: [],
    });
    expect(planVfioBinding({ ...request, interruptRemapping: remappingOn })).toMatchObject({ ok: true, warnings: [] });
    expect(planVfioBinding({ ...request, interruptRemapping: { state: "unknown", detail: "the IOMMU is off now" } })).toMatchObject({
      ok: true,
      warnings: ["Interrupt remapping is not known yet: the IOMMU is off now; it is checked on the first run after that boot"],
    });
  });

  it("reports no change when the file on the host is the planned one", () => {
    const request = { inputs: inputs({ iommuGroups: [4] }), facts: referenceFacts, interruptRemapping: remappingOn, kernel: alpine515, modprobe: "kmod" as const, kernelArgs: [] };
    const first = planVfioBinding(request);
    expect(first.ok && planVfioBinding({ ...request, currentConf: first.content })).toMatchObject({ ok: true, changes: [] });
  });

  it("refuses bindBy address where busybox modprobe ignores install lines", () => {
    expect(planVfioBinding({ inputs: inputs({ iommuGroups: [4], bindBy: "address" }), facts: referenceFacts, interruptRemapping: remappingOn, kernel: alpine515, modprobe: "busybox", kernelArgs: [] })).toEqual({
      ok: false,
      key: "selection",
      errors: [
        'bindBy: "address" needs modprobe to run an `install` command in the initramfs (kmod does); this host\'s initramfs uses busybox modprobe, which ignores `install` lines, so nothing would set driver_override. Use bindBy: "ids"',
      ],
      warnings: [],
    });
  });

  it("writes the driver_override install line for bindBy address with kmod", () => {
    const plan = planVfioBinding({ inputs: inputs({ iommuGroups: [4], bindBy: "address" }), facts: labFacts, interruptRemapping: remappingOn, kernel: alpine515, modprobe: "kmod", kernelArgs: [] });
    expect(plan.ok && plan.content.split("\n")[3]).toBe(
      "install vfio-pci for dev in 0000:00:1d.0 0000:00:1d.1 0000:00:1d.2 0000:00:1d.7; do echo vfio-pci > /sys/bus/pci/devices/$dev/driver_override; done; /sbin/modprobe --ignore-install vfio-pci $CMDLINE_OPTS",
    );
  });

  it("refuses devices whose host driver is built in, which vfio-pci can never beat", () => {
    const kernel = { ...alpine515, builtin: { ehci_pci: "kernel/drivers/usb/host/ehci-pci.ko" } };
    expect(planVfioBinding({ inputs: inputs({ iommuGroups: [4] }), facts: labFacts, interruptRemapping: remappingOn, kernel, modprobe: "kmod", kernelArgs: [] })).toEqual({
      ok: false,
      key: "selection",
      errors: [
        "0000:00:1d.7 (8086:293a) is driven by ehci_pci, which kernel 5.15.74-0-lts builds in: it claims it before vfio-pci (a module) can load, and softdep cannot change that. Boot a kernel that builds ehci_pci as a module",
      ],
      warnings: [],
    });
  });

  it("passes the selection's errors through", () => {
    expect(planVfioBinding({ inputs: inputs({ devices: ["8086:2934"] }), facts: labFacts, interruptRemapping: remappingOn, kernel: alpine515, modprobe: "kmod", kernelArgs: [] })).toMatchObject({
      ok: false,
      key: "selection",
      errors: [
        "IOMMU group 4 is only partly selected: 0000:00:1d.1 (8086:2935), 0000:00:1d.2 (8086:2936) and 0000:00:1d.7 (8086:293a) are not in `devices`; add them, or acknowledge them in `acknowledgeGroupMembers`",
      ],
    });
  });
});

/** The lab's USB controllers, IOMMU group 4: what `iommuGroups: [4]` hands vfio-pci. */
const LAB_IDS = "8086:2934,8086:2935,8086:2936,8086:293a";
const UNSAFE = "vfio_iommu_type1.allow_unsafe_interrupts=1";

describe("planVfioBinding with the stack's kernel args", () => {
  const plan = (kernelArgs: string[], { allowUnsafeInterrupts = false, kernel = vfioBuiltInKernel } = {}) =>
    planVfioBinding({ inputs: inputs({ iommuGroups: [4], allowUnsafeInterrupts }), facts: labFacts, interruptRemapping: remappingOn, kernel, modprobe: "kmod", kernelArgs });

  it("refuses a kernel that builds vfio_pci in until vfio-host:kernelArgs carries its ids", () => {
    expect(vfioBuiltInKernel.builtin).toMatchObject({ vfio_pci: "kernel/drivers/vfio/pci/vfio-pci.ko", vfio_iommu_type1: "kernel/drivers/vfio/vfio_iommu_type1.ko" });
    expect(plan(["intel_iommu=on", "iommu=pt"])).toEqual({
      ok: false,
      key: "kernelArgs",
      errors: [
        "kernel 6.1.0-18-amd64 builds in vfio_pci, which takes its options only from the kernel command line (/etc/modprobe.d never " +
          `reaches it): add "vfio_pci.ids=${LAB_IDS}" to vfio-host:kernelArgs`,
      ],
      warnings: [],
    });
  });

  it("names both built-in modules and both args when allowUnsafeInterrupts is set too", () => {
    expect(plan([], { allowUnsafeInterrupts: true })).toMatchObject({
      ok: false,
      key: "kernelArgs",
      errors: [
        "kernel 6.1.0-18-amd64 builds in vfio_pci and vfio_iommu_type1, which take their options only from the kernel command line " +
          `(/etc/modprobe.d never reaches them): add "vfio_pci.ids=${LAB_IDS}" and "${UNSAFE}" to vfio-host:kernelArgs`,
      ],
    });
    expect(plan([`vfio_pci.ids=${LAB_IDS}`], { allowUnsafeInterrupts: true })).toMatchObject({
      ok: false,
      errors: [
        "kernel 6.1.0-18-amd64 builds in vfio_iommu_type1, which takes its options only from the kernel command line (/etc/modprobe.d " +
          `never reaches it): add "${UNSAFE}" to vfio-host:kernelArgs`,
      ],
    });
  });

  it("accepts the built-in kernel once the args are there, and still writes vfio.conf", () => {
    const accepted = plan(["intel_iommu=on", "iommu=pt", `vfio_pci.ids=${LAB_IDS}`, UNSAFE], { allowUnsafeInterrupts: true });
    expect(accepted).toMatchObject({
      ok: true,
      content: renderModprobeConf({ ids: LAB_IDS.split(","), softdepDrivers: ["ehci_pci", "uhci_hcd"], allowUnsafeInterrupts: true }),
      warnings: ["Interrupt remapping is on (14 interrupt chips in /proc/interrupts are IR- (remapped)), so vfio-host:vfio.allowUnsafeInterrupts is not needed: set it back to false"],
    });
    // vfio-pci parses each id on its own: order and case do not matter, a bare bool is set, and Y reads as true.
    expect(plan(["vfio_pci.ids=8086:293A,8086:2936,8086:2935,8086:2934", "vfio_iommu_type1.allow_unsafe_interrupts"], { allowUnsafeInterrupts: true }).ok).toBe(true);
    expect(plan([`vfio_pci.ids=${LAB_IDS}`, "vfio_iommu_type1.allow_unsafe_interrupts=Y"], { allowUnsafeInterrupts: true }).ok).toBe(true);
  });

  it("refuses ids that differ from the selection, naming both", () => {
    expect(plan(["vfio_pci.ids=8086:2934,8086:2935"])).toEqual({
      ok: false,
      key: "kernelArgs",
      errors: [
        `vfio-host:kernelArgs has "vfio_pci.ids=8086:2934,8086:2935", which contradicts the selection's ids ${LAB_IDS}: the kernel ` +
          `command line reaches vfio_pci whether it is built in or loaded, so write "vfio_pci.ids=${LAB_IDS}" instead`,
      ],
      warnings: [],
    });
  });

  it("refuses allow_unsafe_interrupts turned off on the command line, naming both", () => {
    expect(plan([`vfio_pci.ids=${LAB_IDS}`, "vfio_iommu_type1.allow_unsafe_interrupts=0"], { allowUnsafeInterrupts: true })).toMatchObject({
      ok: false,
      key: "kernelArgs",
      errors: [
        'vfio-host:kernelArgs has "vfio_iommu_type1.allow_unsafe_interrupts=0", which contradicts allowUnsafeInterrupts: true: the ' +
          `kernel command line reaches vfio_iommu_type1 whether it is built in or loaded, so write "${UNSAFE}" instead`,
      ],
    });
    // "true" is refused by kernels before kstrtobool learned it, so it does not count.
    expect(plan([`vfio_pci.ids=${LAB_IDS}`, "vfio_iommu_type1.allow_unsafe_interrupts=true"], { allowUnsafeInterrupts: true }).ok).toBe(false);
  });

  it("judges the last occurrence of a key, as the kernel does", () => {
    expect(plan(["vfio_pci.ids=10de:1c82", `vfio_pci.ids=${LAB_IDS}`]).ok).toBe(true);
    expect(plan([`vfio_pci.ids=${LAB_IDS}`, "vfio_pci.ids=10de:1c82"])).toMatchObject({
      ok: false,
      errors: [expect.stringMatching(/^vfio-host:kernelArgs has "vfio_pci\.ids=10de:1c82", which contradicts/)],
    });
  });

  it("needs nothing on the command line where vfio is a module, but refuses ids there that contradict the selection", () => {
    expect(debianKernel.loadable.vfio_pci).toBe("kernel/drivers/vfio/pci/vfio-pci.ko");
    expect(plan([], { kernel: debianKernel, allowUnsafeInterrupts: true }).ok).toBe(true);
    expect(plan([`vfio_pci.ids=${LAB_IDS}`], { kernel: debianKernel }).ok).toBe(true);
    expect(plan(["vfio_pci.ids=10de:1c82"], { kernel: debianKernel })).toMatchObject({ ok: false, key: "kernelArgs" });
    const byAddress = planVfioBinding({
      inputs: inputs({ iommuGroups: [4], bindBy: "address" }),
      facts: labFacts, interruptRemapping: remappingOn,
      kernel: debianKernel,
      modprobe: "kmod",
      kernelArgs: [`vfio_pci.ids=${LAB_IDS}`],
    });
    expect(byAddress).toEqual({
      ok: false,
      key: "kernelArgs",
      errors: [
        `vfio-host:kernelArgs has "vfio_pci.ids=${LAB_IDS}", which contradicts bindBy "address", which hands vfio-pci the selected ` +
          "addresses only: the kernel command line reaches vfio_pci whether it is built in or loaded, so take it out",
      ],
      warnings: [],
    });
  });

  describe("properties", () => {
    const only = (names: string[]) => ({ ...vfioBuiltInKernel, builtin: Object.fromEntries(names.map((n) => [n, vfioBuiltInKernel.builtin[n]])) });
    const kernels = fc.constantFrom(vfioBuiltInKernel, debianKernel, only(["vfio", "vfio_pci", "vfio_pci_core"]), only(["vfio", "vfio_iommu_type1"]));
    const vfioArg = fc.constantFrom(
      `vfio_pci.ids=${LAB_IDS}`,
      "vfio_pci.ids=8086:293a,8086:2936,8086:2935,8086:2934",
      "vfio_pci.ids=8086:2934,8086:2935",
      "vfio_pci.ids=10de:1c82",
      "vfio_pci.ids=",
      UNSAFE,
      "vfio_iommu_type1.allow_unsafe_interrupts=0",
      "vfio_iommu_type1.allow_unsafe_interrupts=N",
      "vfio_iommu_type1.allow_unsafe_interrupts",
    );
    const otherArg = userArg.filter((a) => !["vfio_pci.ids", "vfio_iommu_type1.allow_unsafe_interrupts"].includes(kernelArgKey(a)));
    const request = fc.record({
      kernel: kernels,
      allowUnsafeInterrupts: fc.boolean(),
      kernelArgs: fc.array(fc.oneof(otherArg, vfioArg), { maxLength: 8 }),
    });
    const planFor = ({ kernel, allowUnsafeInterrupts, kernelArgs }: { kernel: VfioBindingRequest["kernel"]; allowUnsafeInterrupts: boolean; kernelArgs: string[] }) =>
      plan(kernelArgs, { kernel, allowUnsafeInterrupts });

    /** The args a refusal tells the user to write: `add "a" and "b" to …`, `write "a" instead`. */
    const advised = (errors: readonly string[]) =>
      errors.flatMap((e) => [...(/add (.*) to vfio-host:kernelArgs$/.exec(e)?.[1] ?? "").matchAll(/"([^"]+)"/g), ...e.matchAll(/write "([^"]+)" instead$/g)].map((m) => m[1]));

    it("following a refusal's advice is enough, and the kernel args never change vfio.conf", () => {
      const expected = plan([], { kernel: debianKernel });
      fc.assert(
        fc.property(request, (r) => {
          const first = planFor(r);
          const fixed = first.ok ? first : planFor({ ...r, kernelArgs: [...r.kernelArgs, ...advised(first.errors)] });
          expect(first.ok || (first.key === "kernelArgs" && advised(first.errors).length > 0)).toBe(true);
          expect(fixed).toMatchObject({ ok: true });
          const content = expected.ok && renderModprobeConf({ ids: LAB_IDS.split(","), softdepDrivers: ["ehci_pci", "uhci_hcd"], allowUnsafeInterrupts: r.allowUnsafeInterrupts });
          expect(fixed.ok && fixed.content).toBe(content);
        }),
        { numRuns: 300 },
      );
    });

    it("args about other things never change the verdict", () => {
      fc.assert(
        fc.property(request, fc.array(otherArg, { maxLength: 4 }), fc.nat(), (r, others, at) => {
          const i = at % (r.kernelArgs.length + 1);
          const withOthers = [...r.kernelArgs.slice(0, i), ...others, ...r.kernelArgs.slice(i)];
          expect(planFor({ ...r, kernelArgs: withOthers })).toEqual(planFor(r));
        }),
        { numRuns: 200 },
      );
    });
  });
});
