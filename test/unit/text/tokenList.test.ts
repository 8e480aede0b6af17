import { kernelArgSyntax } from "../../../providers/kernel/cmdline";
import { adoptTokens, planTokens, revertTokenText } from "../../../providers/text/tokenList";

describe("adoptTokens", () => {
  const request = { ensure: ["intel_iommu=on", "iommu=pt"], remove: ["nomodeset"] };

  it("owns what one apply of the request made of the backup: added, replaced and removed args", () => {
    const original = "quiet nomodeset intel_iommu=off  splash";
    const written = planTokens(original, request, kernelArgSyntax);
    const owned = adoptTokens(original, written.text, request, kernelArgSyntax);
    expect(owned).toEqual(written.owned);
    expect(revertTokenText(written.text, owned!, kernelArgSyntax)).toBe(original);
  });

  it("owns a removal and an addition of the same key as the apply made them", () => {
    const original = "intel_iommu=off quiet";
    const both = { ensure: ["intel_iommu=on"], remove: ["intel_iommu=off"] };
    const written = planTokens(original, both, kernelArgSyntax);
    expect(written.text).toBe("quiet intel_iommu=on");
    expect(revertTokenText(written.text, adoptTokens(original, written.text, both, kernelArgSyntax)!, kernelArgSyntax)).toBe(original);
  });

  it("owns nothing when an arg the request does not name came or went", () => {
    expect(adoptTokens("quiet", "quiet iommu=pt splash", request, kernelArgSyntax)).toBeUndefined();
    expect(adoptTokens("quiet splash", "quiet iommu=pt", request, kernelArgSyntax)).toBeUndefined();
  });

  it("owns nothing when the args are ours but placed where no apply puts them", () => {
    expect(adoptTokens("quiet splash", "iommu=pt quiet splash", request, kernelArgSyntax)).toBeUndefined();
  });

  it("owns nothing, and needs nothing, when the file is still the backup", () => {
    expect(adoptTokens("quiet", "quiet", request, kernelArgSyntax)).toEqual({ added: [], replaced: [], removed: [] });
  });
});
