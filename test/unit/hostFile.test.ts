import { staleBackupRefusal } from "../../providers/hostFile";

describe("staleBackupRefusal", () => {
  const content = "options vfio-pci ids=10de:1c82\n";

  it("accepts a file without backup, one still holding the backup's bytes, and one already holding ours", () => {
    expect(staleBackupRefusal("/etc/motd", content, Buffer.from("hand\n"), undefined)).toBeUndefined();
    expect(staleBackupRefusal("/etc/motd", content, Buffer.from("orig\n"), Buffer.from("orig\n"))).toBeUndefined();
    expect(staleBackupRefusal("/etc/motd", content, undefined, "absent")).toBeUndefined();
    // A run that died after its write, before Pulumi recorded it: the file is ours.
    expect(staleBackupRefusal("/etc/motd", content, Buffer.from(content), Buffer.from("orig\n"))).toBeUndefined();
  });

  it("refuses a backup that belongs to other bytes, with the commands that settle it", () => {
    expect(staleBackupRefusal("/etc/motd", content, Buffer.from("edited since\n"), Buffer.from("orig\n"))).toBe(
      "/etc/motd matches neither the backup an earlier vfio-host run kept nor the content to write, so destroy could not " +
        "tell which bytes to give back. If that backup is the original, put it back first: " +
        "cp -p /var/lib/vfio-host/backup/etc/motd /etc/motd; if the file as it is now is the original, drop the backup: " +
        "rm /var/lib/vfio-host/backup/etc/motd",
    );
    expect(staleBackupRefusal("/etc/modprobe.d/vfio.conf", content, Buffer.from("by hand\n"), "absent")).toBe(
      "/etc/modprobe.d/vfio.conf matches neither the backup an earlier vfio-host run kept nor the content to write, so " +
        "destroy could not tell which bytes to give back. /var/lib/vfio-host/backup/etc/modprobe.d/vfio.conf.absent says it " +
        "did not exist before. If it should not exist, remove it: rm /etc/modprobe.d/vfio.conf " +
        "/var/lib/vfio-host/backup/etc/modprobe.d/vfio.conf.absent; if the file as it is now is the original, drop the " +
        "marker: rm /var/lib/vfio-host/backup/etc/modprobe.d/vfio.conf.absent",
    );
  });
});
