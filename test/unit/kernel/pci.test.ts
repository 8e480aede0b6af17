import { normalizePciAddress } from "../../../providers/kernel/pci";

describe("normalizePciAddress", () => {
  it("adds the domain and lowercases", () => {
    expect(normalizePciAddress("00:1A.7")).toBe("0000:00:1a.7");
    expect(normalizePciAddress("0000:00:1d.0")).toBe("0000:00:1d.0");
    expect(normalizePciAddress("00:1d")).toBeUndefined();
    expect(normalizePciAddress("8086:3a67")).toBeUndefined();
  });
});
