"""What the stand-in OS "installs": a tiny disk that really boots, under SeaBIOS and OVMF.

`disk_image()` is built byte by byte here (no assembler, no mkfs), the same bytes every time:
- sector 0, an MBR: 16-bit code that writes the NUL-terminated ASCII string at
  BIOS_MESSAGE to COM1 and halts (SeaBIOS boots it), and one partition entry: an EFI
  system partition (type 0xEF) at PARTITION_LBA;
- that partition, a FAT12 filesystem holding `\\EFI\\BOOT\\BOOTX64.EFI`, the removable-media
  path OVMF boots from a disk without boot entries: a PE32+ EFI application that widens
  the ASCII string at EFI_MESSAGE (a disk offset inside that file) to UTF-16 and prints it
  through the system table's ConOut (OVMF mirrors it to the serial port), then halts.

Both strings start empty; the stand-in writes `GEN-DISK: booted from disk, installed as
<host>` at both offsets when it installs, so the console names the node that installed.
"""

from __future__ import annotations

import struct

SECTOR = 512
BIOS_MESSAGE = 128  # disk offset of the MBR's string (up to the partition table at 446)
PARTITION_LBA = 64
FAT_SECTORS = 128  # 64 KiB FAT12: 1 reserved, 2 FATs of 1 sector, 1 root dir sector
PE_FILE_ALIGN = 0x200
PE_TEXT_RVA = 0x1000
PE_ASCII = 0x100  # offset of the ASCII string in .text (raw data and memory alike)
PE_WIDE = 0x400  # offset of the UTF-16 buffer in .text (memory only, zero-filled)
MESSAGE_MAX = 200  # bytes of either string, NUL included


def boot_sector() -> bytes:
    """A 512-byte MBR (no partitions yet) that writes the NUL-terminated string at
    BIOS_MESSAGE to COM1 and halts: 16-bit real mode code, loaded at 0000:7C00."""
    message = 0x7C00 + BIOS_MESSAGE
    code = bytes([
        0xFA,                                    # cli
        0x31, 0xC0,                              # xor ax, ax
        0x8E, 0xD8,                              # mov ds, ax
        0xFC,                                    # cld
        0xBE, message & 0xFF, message >> 8,      # mov si, message
        0xBA, 0xF8, 0x03,                        # mov dx, 0x3f8 (COM1's data port)
        0xAC,                                    # next: lodsb
        0x84, 0xC0,                              # test al, al
        0x74, 0x03,                              # jz halt
        0xEE,                                    # out dx, al
        0xEB, 0xF8,                              # jmp next
        0xF4,                                    # halt: hlt
        0xEB, 0xFD,                              # jmp halt
    ])
    sector = bytearray(SECTOR)
    sector[:len(code)] = code
    sector[510:] = b"\x55\xaa"  # the BIOS boots a sector only with this signature
    return bytes(sector)


def _rel32(at: int, length: int, target: int) -> bytes:
    """The rel32 of an instruction at `at` of `length` bytes reaching `target` (same section)."""
    return struct.pack("<i", target - (at + length))


def efi_application() -> bytes:
    """A PE32+ EFI application: widen the ASCII string at .text+PE_ASCII into .text+PE_WIDE,
    ConOut->OutputString(ConOut, wide), then halt forever (interrupts stay on)."""
    code = bytearray()
    code += b"\x48\x83\xEC\x28"                              # sub rsp, 0x28 (shadow space)
    code += b"\x48\x8B\x5A\x40"                              # mov rbx, [rdx+0x40] (ConOut)
    code += b"\x48\x8D\x35" + _rel32(len(code), 7, PE_ASCII)  # lea rsi, [rip+ascii]
    code += b"\x48\x8D\x3D" + _rel32(len(code), 7, PE_WIDE)   # lea rdi, [rip+wide]
    loop = len(code)
    code += b"\x0F\xB6\x06"                                  # next: movzx eax, byte [rsi]
    code += b"\x66\x89\x07"                                  # mov [rdi], ax
    code += b"\x48\xFF\xC6"                                  # inc rsi
    code += b"\x48\x83\xC7\x02"                              # add rdi, 2
    code += b"\x85\xC0"                                      # test eax, eax
    code += b"\x75" + struct.pack("<b", loop - (len(code) + 2))  # jnz next
    code += b"\x48\x89\xD9"                                  # mov rcx, rbx (This)
    code += b"\x48\x8D\x15" + _rel32(len(code), 7, PE_WIDE)   # lea rdx, [rip+wide]
    code += b"\xFF\x51\x08"                                  # call [rcx+8] (OutputString)
    code += b"\xF4\xEB\xFD"                                  # halt: hlt; jmp halt
    assert len(code) < PE_ASCII
    text = bytearray(PE_FILE_ALIGN)
    text[:len(code)] = code
    raw_size, virtual_size = len(text), PE_WIDE + 2 * MESSAGE_MAX

    coff = struct.pack("<HHIIIHH", 0x8664, 1, 0, 0, 0, 240, 0x0022)  # x64, executable
    optional = struct.pack(
        "<HBBIIIIIQIIHHHHHHIIIIHHQQQQII",
        0x20B, 0, 0, raw_size, 0, 0, PE_TEXT_RVA, PE_TEXT_RVA,  # PE32+, entry = .text
        0x10000000, 0x1000, PE_FILE_ALIGN,                      # image base, alignments
        0, 0, 0, 0, 0, 0, 0,                                    # versions, Win32VersionValue
        PE_TEXT_RVA + 0x1000, PE_FILE_ALIGN, 0,                 # image size, headers, sum
        10, 0,                                                  # EFI application
        0x10000, 0x10000, 0x10000, 0x10000, 0, 16)              # stack/heap, 16 directories
    optional += bytes(16 * 8)  # no imports, no relocations: the code is position-independent
    section = struct.pack("<8sIIIIIIHHI", b".text", virtual_size, PE_TEXT_RVA, raw_size,
                          PE_FILE_ALIGN, 0, 0, 0, 0, 0xE0000020)  # code, rwx
    headers = bytearray(PE_FILE_ALIGN)
    headers[:2] = b"MZ"
    headers[0x3C:0x40] = struct.pack("<I", 0x40)
    pe = b"PE\0\0" + coff + optional + section
    headers[0x40:0x40 + len(pe)] = pe
    return bytes(headers + text)


def _dir_entry(name: bytes, attributes: int, cluster: int, size: int = 0) -> bytes:
    # 1980-01-01 00:00 everywhere: fixed bytes, and FAT's earliest date
    return struct.pack("<11sBBBHHHHHHHI", name, attributes, 0, 0, 0, 0x21, 0x21, 0, 0, 0x21,
                       cluster, size)


def _fat12(entries: list[int]) -> bytes:
    if len(entries) % 2:
        entries = [*entries, 0]
    out = bytearray()
    for low, high in zip(entries[::2], entries[1::2], strict=True):
        out += bytes([low & 0xFF, (low >> 8) | ((high & 0xF) << 4), high >> 4])
    return bytes(out)


def fat_filesystem(efi: bytes) -> bytes:
    """FAT12 with \\EFI\\BOOT\\BOOTX64.EFI = efi: root dir, then EFI (cluster 2), BOOT
    (cluster 3), the file from cluster 4 on (one sector per cluster)."""
    clusters = -(-len(efi) // SECTOR)
    boot = bytearray(SECTOR)
    boot[:3] = b"\xEB\x3C\x90"
    boot[3:62] = struct.pack("<8sHBHBHHBHHHIIBBBI11s8s", b"GEN-DISK", SECTOR, 1, 1, 2, 16,
                             FAT_SECTORS, 0xF8, 1, 32, 2, PARTITION_LBA, 0, 0x80, 0, 0x29,
                             0x67656E31, b"GEN-ESP    ", b"FAT12   ")
    boot[510:] = b"\x55\xaa"
    chain = [0xFF8, 0xFFF, 0xFFF, 0xFFF] + [5 + i for i in range(clusters - 1)] + [0xFFF]
    fat = _fat12(chain).ljust(SECTOR, b"\0")
    root = _dir_entry(b"EFI        ", 0x10, 2).ljust(SECTOR, b"\0")
    efi_dir = (_dir_entry(b".          ", 0x10, 2) + _dir_entry(b"..         ", 0x10, 0)
               + _dir_entry(b"BOOT       ", 0x10, 3)).ljust(SECTOR, b"\0")
    boot_dir = (_dir_entry(b".          ", 0x10, 3) + _dir_entry(b"..         ", 0x10, 2)
                + _dir_entry(b"BOOTX64 EFI", 0x20, 4, len(efi))).ljust(SECTOR, b"\0")
    image = bytes(boot) + fat + fat + root + efi_dir + boot_dir \
        + efi.ljust(clusters * SECTOR, b"\0")
    assert len(image) <= FAT_SECTORS * SECTOR
    return image.ljust(FAT_SECTORS * SECTOR, b"\0")


# BOOTX64.EFI starts at cluster 4: after boot sector, 2 FATs, root dir, then clusters 2, 3
EFI_FILE_LBA = PARTITION_LBA + 1 + 2 + 1 + 2
EFI_MESSAGE = EFI_FILE_LBA * SECTOR + PE_FILE_ALIGN + PE_ASCII  # disk offset


def disk_image() -> bytes:
    """The installed disk's first (PARTITION_LBA + FAT_SECTORS) sectors."""
    mbr = bytearray(boot_sector())
    # one partition: not active, CHS fields unused (0xFE 0xFF 0xFF: "use LBA"), type 0xEF
    mbr[446:462] = struct.pack("<B3sB3sII", 0, b"\xFE\xFF\xFF", 0xEF, b"\xFE\xFF\xFF",
                               PARTITION_LBA, FAT_SECTORS)
    gap = bytes((PARTITION_LBA - 1) * SECTOR)
    return bytes(mbr) + gap + fat_filesystem(efi_application())
