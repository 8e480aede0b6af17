import fc from "fast-check";
import { moduleListForKernel } from "../../../providers/kernel/modules";
import { planMkinitfsFeatures, renderVfioFeatureModules, revertMkinitfsFeatures } from "../../../providers/initramfsModules/mkinitfs";
import { alpine515Kernel, alpine66Kernel, alpineMkinitfsConf } from "./fixtures";

describe("planMkinitfsFeatures", () => {
  it("adds vfio to features= of Alpine's mkinitfs.conf, and takes it away on revert", () => {
    const plan = planMkinitfsFeatures({ text: alpineMkinitfsConf });
    expect(plan.text).toBe('features="ata base ide scsi usb virtio ext4 vfio"\n');
    expect(plan.changes).toEqual(["+ vfio"]);
    expect(revertMkinitfsFeatures(plan.text, plan.owned)).toBe(alpineMkinitfsConf);
  });

  it("leaves a file that already lists vfio alone, and does not take it away on revert", () => {
    const text = 'features="base vfio ext4"\n';
    const plan = planMkinitfsFeatures({ text });
    expect(plan.text).toBe(text);
    expect(revertMkinitfsFeatures(text, plan.owned)).toBe(text);
  });

  it("refuses a file without features=, where mkinitfs would build an initramfs with only vfio", () => {
    expect(() => planMkinitfsFeatures({ text: "# empty\n" })).toThrow(
      '/etc/mkinitfs/mkinitfs.conf has no features= line, so mkinitfs would build an initramfs with nothing but vfio in it; put back the stock line first, e.g. features="ata base ide scsi usb virtio ext4"',
    );
  });
});

describe("renderVfioFeatureModules", () => {
  it("lists the kernel's VFIO modules as mkinitfs globs, vfio_virqfd only where it exists", () => {
    expect(renderVfioFeatureModules(moduleListForKernel(alpine515Kernel))).toBe(
      [
        "# Managed by vfio-host (Pulumi InitramfsModules); changes here are overwritten.",
        '# mkinitfs reads this file only while features= in /etc/mkinitfs/mkinitfs.conf lists "vfio".',
        "kernel/drivers/vfio/vfio.ko*",
        "kernel/drivers/vfio/pci/vfio-pci.ko*",
        "kernel/drivers/vfio/vfio_iommu_type1.ko*",
        "kernel/drivers/vfio/vfio_virqfd.ko*",
        "",
      ].join("\n"),
    );
    expect(renderVfioFeatureModules(moduleListForKernel(alpine66Kernel)).split("\n").slice(2)).toEqual([
      "kernel/drivers/vfio/vfio.ko*",
      "kernel/drivers/vfio/pci/vfio-pci.ko*",
      "kernel/drivers/vfio/vfio_iommu_type1.ko*",
      "",
    ]);
  });
});

const feature = fc.constantFrom("ata", "base", "ide", "scsi", "usb", "virtio", "ext4", "nvme", "cryptsetup", "keymap", "vfio");
const mkinitfsConf = fc
  .record({
    features: fc.array(feature, { maxLength: 8 }),
    gaps: fc.array(fc.constantFrom(" ", "  ", "\t"), { minLength: 8, maxLength: 8 }),
    quote: fc.constantFrom('"', "'"),
    before: fc.constantFrom("", "# mkinitfs.conf\n", 'disable_trigger="yes"\n'),
    after: fc.constantFrom("", "\n", "\n# trailing comment", '\nkernel_opts=""\n'),
  })
  .map(({ features, gaps, quote, before, after }) => `${before}features=${quote}${features.map((f, i) => (i === 0 ? f : gaps[i] + f)).join("")}${quote}${after}`);

describe("planMkinitfsFeatures properties", () => {
  it("revert(apply(file)) restores the original bytes, and applying twice equals once", () => {
    fc.assert(
      fc.property(mkinitfsConf, (text) => {
        const once = planMkinitfsFeatures({ text });
        expect(revertMkinitfsFeatures(once.text, once.owned)).toBe(text);
        expect(planMkinitfsFeatures({ text: once.text, previouslyOwned: once.owned })).toEqual({ ...once, changes: [] });
      }),
    );
  });
});

describe("planMkinitfsFeatures after a run that died before Pulumi recorded its state", () => {
  it("write, lose the state, plan again with the backup, revert: the original bytes", () => {
    fc.assert(
      fc.property(mkinitfsConf, (original) => {
        const written = planMkinitfsFeatures({ text: original });
        const again = planMkinitfsFeatures({ text: written.text, backup: original });
        expect(again.text).toBe(written.text);
        expect(revertMkinitfsFeatures(written.text, again.owned)).toBe(original);
      }),
    );
  });

  it("does not take a vfio the backup already had", () => {
    const original = 'features="base vfio ext4"\n';
    expect(revertMkinitfsFeatures(original, planMkinitfsFeatures({ text: original, backup: original }).owned)).toBe(original);
  });
});
