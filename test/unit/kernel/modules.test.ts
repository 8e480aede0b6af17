import {
  KernelModules,
  absentModules,
  missingFromInitramfs,
  moduleListForKernel,
  parseModulesDep,
} from "../../../providers/kernel/modules";
import { alpine515Kernel, alpine66Kernel, alpine66MkinitfsList, debianKernel, debianLsinitramfsAfter, debianLsinitramfsBefore } from "../initramfsModules/fixtures";

describe("parseModulesDep", () => {
  it("maps module names, with underscores, to their paths", () => {
    expect(parseModulesDep("kernel/drivers/vfio/pci/vfio-pci.ko.zst: kernel/drivers/vfio/vfio.ko.zst\n\n")).toEqual({
      vfio_pci: "kernel/drivers/vfio/pci/vfio-pci.ko.zst",
    });
  });
});

describe("moduleListForKernel", () => {
  it("includes vfio_virqfd on kernels that still have it (Debian 12, 6.1)", () => {
    expect(moduleListForKernel(debianKernel)).toEqual([
      { name: "vfio", fileName: "vfio", path: "kernel/drivers/vfio/vfio.ko", builtin: false },
      { name: "vfio_pci", fileName: "vfio-pci", path: "kernel/drivers/vfio/pci/vfio-pci.ko", builtin: false },
      { name: "vfio_iommu_type1", fileName: "vfio_iommu_type1", path: "kernel/drivers/vfio/vfio_iommu_type1.ko", builtin: false },
      { name: "vfio_virqfd", fileName: "vfio_virqfd", path: "kernel/drivers/vfio/vfio_virqfd.ko", builtin: false },
    ]);
    expect(moduleListForKernel(alpine515Kernel).map((m) => m.fileName)).toEqual(["vfio", "vfio-pci", "vfio_iommu_type1", "vfio_virqfd"]);
  });

  it("leaves vfio_virqfd out from Linux 6.2 on, where it is part of vfio", () => {
    expect(moduleListForKernel(alpine66Kernel).map((m) => m.fileName)).toEqual(["vfio", "vfio-pci", "vfio_iommu_type1"]);
  });

  it("marks built-in modules", () => {
    const kernel: KernelModules = { ...alpine66Kernel, builtin: { vfio: "kernel/drivers/vfio/vfio.ko" } };
    expect(moduleListForKernel(kernel)[0]).toEqual({ name: "vfio", fileName: "vfio", path: "kernel/drivers/vfio/vfio.ko", builtin: true });
  });

  it("refuses a kernel without VFIO", () => {
    const kernel: KernelModules = { release: "6.6.58-0-virt", loadable: { vfio: "kernel/drivers/vfio/vfio.ko.gz" }, builtin: {} };
    expect(() => moduleListForKernel(kernel)).toThrow(
      "Kernel 6.6.58-0-virt has no vfio_pci, vfio_iommu_type1 (neither in modules.dep nor in modules.builtin), so it cannot hand devices to vfio-pci; boot a kernel built with CONFIG_VFIO, CONFIG_VFIO_PCI and CONFIG_VFIO_IOMMU_TYPE1",
    );
  });
});

describe("absentModules", () => {
  it("accepts either spelling", () => {
    expect(absentModules(alpine66Kernel, ["vfio-pci", "vfio_pci", "vfio_virqfd", "ehci_pci"])).toEqual(["vfio_virqfd"]);
  });
});

describe("missingFromInitramfs", () => {
  it("reads lsinitramfs output", () => {
    const modules = moduleListForKernel(debianKernel);
    expect(missingFromInitramfs(debianLsinitramfsBefore, modules)).toEqual(["vfio", "vfio_pci", "vfio_iommu_type1", "vfio_virqfd"]);
    expect(missingFromInitramfs(debianLsinitramfsAfter, modules)).toEqual([]);
  });

  it("reads mkinitfs -l output with compressed modules", () => {
    expect(missingFromInitramfs(alpine66MkinitfsList, moduleListForKernel(alpine66Kernel))).toEqual([]);
    expect(missingFromInitramfs(alpine66MkinitfsList, moduleListForKernel(alpine515Kernel))).toEqual(["vfio_virqfd"]);
  });

  it("needs no file for a built-in module", () => {
    const kernel: KernelModules = { ...alpine66Kernel, builtin: { vfio_iommu_type1: "kernel/drivers/vfio/vfio_iommu_type1.ko" } };
    expect(missingFromInitramfs("./lib/modules/6.6.58-0-lts/kernel/drivers/vfio/vfio.ko.gz\n", moduleListForKernel(kernel))).toEqual(["vfio_pci"]);
  });
});
