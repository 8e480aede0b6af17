import { parseOsinfoQuery, parseVirshFields } from "../../../providers/libvirt/toolOutput";

describe("parseVirshFields", () => {
  it("reads virsh dominfo", () => {
    const fields = parseVirshFields(`Id:             3
Name:           homeassistant
UUID:           5b7f6c2e-3d8a-4e0b-9a51-2f4c8d9e1a37
OS Type:        hvm
State:          running
CPU(s):         2
CPU time:       5321.4s
Max memory:     4194304 KiB
Used memory:    4194304 KiB
Persistent:     yes
Autostart:      enable
Managed save:   no
Security model: apparmor
Security DOI:   0
Security label: libvirt-5b7f6c2e-3d8a-4e0b-9a51-2f4c8d9e1a37 (enforcing)
`);
    expect(fields).toMatchObject({ Name: "homeassistant", State: "running", Autostart: "enable", "CPU time": "5321.4s" });
  });
});

describe("parseOsinfoQuery", () => {
  it("maps short ids to libosinfo ids", () => {
    expect(
      parseOsinfoQuery(` Short ID             | ID
----------------------+-----------------------------------------
 debian12             | http://debian.org/debian/12
 linux2022            | http://libosinfo.org/linux/2022
`),
    ).toEqual({ debian12: "http://debian.org/debian/12", linux2022: "http://libosinfo.org/linux/2022" });
  });
});
