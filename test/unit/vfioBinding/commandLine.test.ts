import { turnsIommuOn } from "../../../providers/vfioBinding/commandLine";
import { isTrueParameter } from "../../../providers/vfioBinding/modprobeConf";

describe("turnsIommuOn", () => {
  it("sees intel_iommu=on, alone or in its comma list, and amd_iommu=on or force_isolation", () => {
    for (const args of [["intel_iommu=on", "iommu=pt"], ["quiet", "intel_iommu=on,igfx_off"], ["amd_iommu=on"], ["amd_iommu=force_isolation", "iommu=pt"]]) {
      expect({ args, on: turnsIommuOn(args) }).toEqual({ args, on: true });
    }
  });

  it("does not take iommu=pt, vfio_pci.ids or an IOMMU the last occurrence turns off for an IOMMU turned on", () => {
    for (const args of [[], ["iommu=pt"], ["vfio_pci.ids=8086:2934"], ["intel_iommu=on", "intel_iommu=off"], ["intel_iommu=on,off"], ["intel_iommu=igfx_off"]]) {
      expect({ args, on: turnsIommuOn(args) }).toEqual({ args, on: false });
    }
  });
});

describe("isTrueParameter", () => {
  it("reads a bool module parameter as every kernel's kstrtobool does", () => {
    expect(["1", "y", "Y", "yes", "on", "ON"].filter(isTrueParameter)).toEqual(["1", "y", "Y", "yes", "on", "ON"]);
    expect(["0", "n", "N", "off", "", "true", "t", "2"].filter(isTrueParameter)).toEqual([]);
  });
});
