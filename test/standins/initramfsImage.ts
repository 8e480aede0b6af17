// Reads an initramfs image as mkinitfs writes it (Alpine's and the stand-in alike): a gzip'd cpio
// archive in the "newc" format, whose 110-byte ASCII headers and names are padded to 4 bytes
// (cpio(5), "New ASCII Format"). Parsed here so the tests need no cpio on this machine.
import { gunzipSync } from "node:zlib";

export interface InitramfsMember {
  /** As archived, without a leading "./": "etc/modprobe.d/vfio.conf". */
  readonly name: string;
  readonly mode: number;
  readonly data: Buffer;
}

const HEADER = 110;
const pad4 = (n: number) => (n + 3) & ~3;

export function readInitramfs(image: Buffer): InitramfsMember[] {
  const archive = gunzipSync(image);
  const members: InitramfsMember[] = [];
  let at = 0;
  for (;;) {
    const magic = archive.toString("ascii", at, at + 6);
    if (magic !== "070701") throw new Error(`not a newc cpio member at byte ${at} (magic "${magic}")`);
    const field = (i: number) => parseInt(archive.toString("ascii", at + 6 + 8 * i, at + 14 + 8 * i), 16);
    const [mode, size, nameSize] = [field(1), field(6), field(11)];
    const name = archive.toString("utf8", at + HEADER, at + HEADER + nameSize - 1).replace(/^\.\//, "");
    const dataStart = pad4(at + HEADER + nameSize);
    if (name === "TRAILER!!!") return members;
    members.push({ name, mode, data: archive.subarray(dataStart, dataStart + size) });
    at = pad4(dataStart + size);
  }
}
