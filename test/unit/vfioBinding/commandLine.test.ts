import { isTrueParameter } from "../../../providers/vfioBinding/modprobeConf";

describe("isTrueParameter", () => {
  it("reads a bool module parameter as every kernel's kstrtobool does", () => {
    expect(["1", "y", "Y", "yes", "on", "ON"].filter(isTrueParameter)).toEqual(["1", "y", "Y", "yes", "on", "ON"]);
    expect(["0", "n", "N", "off", "", "true", "t", "2"].filter(isTrueParameter)).toEqual([]);
  });
});
