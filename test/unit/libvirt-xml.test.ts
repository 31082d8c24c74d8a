// The VM as libvirt sees it: golden documents for a plain sandbox and a pod
// sandbox, each element tied to the argv piece it stands for, and the real
// virt-xml-validate (Debian's libvirt-clients) checking them against
// libvirt's own schema. A host tool only: no VM runs.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { renderLibvirtXml } from '../../shim/src/hypervisor/libvirt-xml.js';
import { qemuCommand, renderQemuArgs } from '../../shim/src/hypervisor/qemu-args.js';
import type { VmDescription } from '../../shim/src/hypervisor/vm-description.js';
import { escapeAttr, escapeComment, escapeText } from '../../shim/src/hypervisor/xml.js';
import { DEFAULT_SETTINGS } from '../../shim/src/sandbox/settings.js';
import { planVm } from '../../shim/src/sandbox/vm-plan.js';

const settings = { ...DEFAULT_SETTINGS, kernelPath: '/opt/kata-ts/vmlinux', imagePath: '/opt/kata-ts/rootfs.img' };
const IMAGE_BYTES = 128 * 1024 * 1024;

/** `ctr run` of a plain container under TCG: QEMU makes its own tap in a namespace of its own. */
const plain = planVm({
  name: 'c1@default',
  settings,
  accel: 'tcg',
  channel: 'serial',
  guestCid: 7,
  imageSizeBytes: IMAGE_BYTES,
  network: { kind: 'own-namespace', tap: 'tap0_kt', mac: '02:6b:74:00:00:01', vhost: false },
});

/** A CRI pod under KVM with vhost-vsock and two CNI interfaces, sized by the pod's limits. */
const pod = planVm({
  name: 'pod1@k8s.io',
  settings: { ...settings, cpus: 2, memoryMiB: 512 },
  accel: 'kvm',
  channel: 'vsock',
  guestCid: 1234,
  imageSizeBytes: IMAGE_BYTES,
  network: {
    kind: 'passed-taps',
    taps: [
      { name: 'tap0_kt', mac: '0a:58:0a:f4:00:05', mtu: 1450 },
      { name: 'tap1_kt', mac: '0a:58:0a:f5:00:05', mtu: 9000 },
    ],
    vhost: true,
  },
});

/** An argv piece (an option and its value, or a lone flag) and the XML that stands for it. */
type Tie = [argv: string, xml: string[]];

const dir = (name: string) => `/run/kata-ts/vm/${name}`;

function commonTies(name: string, d: VmDescription): Tie[] {
  const vm = dir(name);
  return [
    [`-name kata-ts-${name}`, [`<name>kata-ts-${name}</name>`]],
    ['-machine q35,nvdimm=on,sata=off,smbus=off,vmport=off,graphics=off', ["<type arch='x86_64' machine='q35'>hvm</type>", "<vmport state='off'/>", '-machine q35,sata=off,smbus=off,graphics=off   (nvdimm=on']],
    [`-smp ${d.cpus},maxcpus=4`, [`<vcpu placement='static' current='${d.cpus}'>4</vcpu>`]],
    [`-m ${d.memoryMiB}M,slots=2,maxmem=4096M`, ["<maxMemory slots='2' unit='MiB'>4096</maxMemory>", `<memory unit='MiB'>${d.memoryMiB + 128}</memory>`]],
    [`-object memory-backend-memfd,id=ram0,size=${d.memoryMiB}M,share=on`, ["<source type='memfd'/>", "<access mode='shared'/>"]],
    ['-numa node,memdev=ram0', [`<cell id='0' cpus='0-3' memory='${d.memoryMiB}' unit='MiB' memAccess='shared'/>`]],
    ['-bios /usr/share/qemu/qboot.rom', ["<loader type='rom'>/usr/share/qemu/qboot.rom</loader>"]],
    ['-kernel /opt/kata-ts/vmlinux', ['<kernel>/opt/kata-ts/vmlinux</kernel>']],
    [`-append ${d.kernel.cmdline.join(' ')}`, [`<cmdline>${d.kernel.cmdline.join(' ')}</cmdline>`]],
    ['-object memory-backend-file,id=rootfs0,mem-path=/opt/kata-ts/rootfs.img,size=134217728,share=on,readonly=on', ["<memory model='nvdimm' access='shared'>", '<path>/opt/kata-ts/rootfs.img</path>', "<size unit='bytes'>134217728</size>"]],
    ['-device nvdimm,id=nv0,memdev=rootfs0,unarmed=on', ["<memory model='nvdimm' access='shared'>", '<readonly/>']],
    [`-chardev socket,id=virtiofs0,path=${vm}/virtiofsd.sock`, [`<source socket='${vm}/virtiofsd.sock'/>`]],
    ['-device vhost-user-fs-pci,chardev=virtiofs0,tag=kataShared,queue-size=1024', ["<filesystem type='mount'>", "<driver type='virtiofs' queue='1024'/>", "<target dir='kataShared'/>"]],
    ['-object rng-random,id=rng0,filename=/dev/urandom', ["<backend model='random'>/dev/urandom</backend>"]],
    ['-device virtio-rng-pci,rng=rng0', ["<rng model='virtio'>"]],
    ['-device virtio-balloon-pci,id=balloon0,free-page-reporting=on', ["<memballoon model='virtio' freePageReporting='on'/>"]],
    [`-chardev file,id=console0,path=${vm}/console.log,append=on`, ["<serial type='file'>", "<console type='file'>", `<source path='${vm}/console.log' append='on'/>`]],
    ['-serial chardev:console0', ["<target type='isa-serial' port='0'/>", "<target type='serial' port='0'/>"]],
    [`-chardev socket,id=qmp0,path=${vm}/qmp.sock,server=on,wait=off`, ["<qemu:arg value='-chardev'/>", `<qemu:arg value='socket,id=qmp0,path=${vm}/qmp.sock,server=on,wait=off'/>`]],
    ['-mon chardev=qmp0,mode=control', ["<qemu:arg value='-mon'/>", "<qemu:arg value='chardev=qmp0,mode=control'/>"]],
    [`-pidfile ${vm}/qemu.pid`, [`-pidfile ${vm}/qemu.pid   (libvirt keeps its own pidfile)`]],
    ['-nodefaults', ['-nodefaults -no-user-config   (libvirt always passes both)']],
    ['-no-user-config', ['-nodefaults -no-user-config   (libvirt always passes both)']],
    ['-nographic', ['-nographic   (a domain without <graphics> gets no display)']],
    ['-no-reboot', ['<on_reboot>destroy</on_reboot>']],
    ['-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny', ['-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny   (qemu.conf seccomp_sandbox']],
  ];
}

const plainTies: Tie[] = [
  ...commonTies('c1@default', plain),
  ['-accel tcg,tb-size=128', ["<domain type='qemu'", "<tb-cache unit='MiB'>128</tb-cache>"]],
  ['-cpu max', ["<cpu mode='maximum'>"]],
  ['-netdev tap,id=net0,ifname=tap0_kt,script=no,downscript=no,vnet_hdr=on,vhost=off', ["<interface type='ethernet'>", "<target dev='tap0_kt' managed='no'/>", "<driver name='qemu'/>", 'QEMU creates this tap (script=no,downscript=no,vnet_hdr=on)']],
  ['-device virtio-net-pci,netdev=net0,mac=02:6b:74:00:00:01,romfile=', ["<mac address='02:6b:74:00:00:01'/>", "<model type='virtio'/>", "<rom enabled='no'/>"]],
  ['-device virtio-serial-pci,id=serial0', ["<controller type='virtio-serial' index='0'/>"]],
  ['-chardev socket,id=agent0,path=/run/kata-ts/vm/c1@default/agent.sock,server=on,wait=off', ["<channel type='unix'>", "<source mode='bind' path='/run/kata-ts/vm/c1@default/agent.sock'/>"]],
  ['-device virtserialport,bus=serial0.0,chardev=agent0,name=agent.channel.0', ["<target type='virtio' name='agent.channel.0'/>"]],
];

const podTies: Tie[] = [
  ...commonTies('pod1@k8s.io', pod),
  ['-accel kvm', ["<domain type='kvm'"]],
  ['-cpu host', ["<cpu mode='host-passthrough'>"]],
  ['-netdev tap,id=net0,fd=3,vhost=on', ["<interface type='ethernet'>", "<target dev='tap0_kt' managed='no'/>", "<driver name='vhost'/>", 'QEMU is handed this tap as fd 3']],
  ['-device virtio-net-pci,netdev=net0,mac=0a:58:0a:f4:00:05,host_mtu=1450,romfile=', ["<mac address='0a:58:0a:f4:00:05'/>", "<mtu size='1450'/>", "<rom enabled='no'/>"]],
  ['-netdev tap,id=net1,fd=4,vhost=on', ["<target dev='tap1_kt' managed='no'/>", 'QEMU is handed this tap as fd 4']],
  ['-device virtio-net-pci,netdev=net1,mac=0a:58:0a:f5:00:05,host_mtu=9000,romfile=', ["<mac address='0a:58:0a:f5:00:05'/>", "<mtu size='9000'/>"]],
  ['-device vhost-vsock-pci,id=vsock0,guest-cid=1234', ["<vsock model='virtio'>", "<cid auto='no' address='1234'/>"]],
];

/** argv as pieces: an option with its value, or a flag alone. */
function pieces(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const next = argv[i + 1];
    if (next !== undefined && !next.startsWith('-')) out.push(`${argv[i]} ${argv[++i]}`);
    else out.push(argv[i]!);
  }
  return out;
}

describe.each([
  ['plain', plain, plainTies],
  ['pod', pod, podTies],
] as const)('libvirt XML of a %s sandbox', (kind, d, ties) => {
  const xml = renderLibvirtXml(d);

  it('matches its golden document', async () => {
    await expect(xml).toMatchFileSnapshot(`golden/libvirt-${kind}.xml`);
  });

  it('has an element, or a comment that says why not, for every argv piece, and nothing else', () => {
    const argv = pieces(renderQemuArgs(d));
    for (const [piece, fragments] of ties) {
      expect(argv, piece).toContain(piece);
      for (const f of fragments) expect(xml, `${piece} → ${f}`).toContain(f);
    }
    // Every piece is tied: a new argv option must be given its place in the XML.
    expect(argv.filter((p) => !ties.some(([t]) => t === p))).toEqual([]);
    // And every device in the XML stands for an argv piece (or a default libvirt would add).
    const devices = xml.slice(xml.indexOf('<devices>'), xml.indexOf('</devices>'));
    const topLevel = [...devices.matchAll(/^ {4}<([a-z]+)/gm)].map((m) => m[1]);
    const allFragments = ties.flatMap(([, f]) => f).join('\n');
    for (const tag of new Set(topLevel)) if (tag !== 'emulator' && tag !== 'controller' && tag !== 'memballoon') expect(allFragments, tag).toContain(`<${tag} `);
  });
});

describe('libvirt XML', () => {
  it('says what wraps QEMU, which a domain cannot say', () => {
    expect(qemuCommand(plain).slice(0, 3)).toEqual(['unshare', '--net', '--']);
    expect(renderLibvirtXml(plain)).toContain('QEMU runs under unshare(1) in a network namespace of its own');
    const job = { ...plain, dieWithOwner: true };
    expect(qemuCommand(job).slice(0, 4)).toEqual(['setpriv', '--pdeathsig', 'KILL', '--']);
    // A comment cannot hold "--": each pair is broken by a space.
    expect(renderLibvirtXml(job)).toContain('QEMU runs under setpriv - -pdeathsig KILL: it dies with the process that started it');
  });

  it('leaves out what the description does not have: firmware, TCG buffer, shared filesystem, NICs', () => {
    const { firmware: _f, sharedFs: _s, networks: _n, ownNetworkNamespace: _o, tcgTranslationBufferMiB: _t, ...bare } = plain;
    const xml = renderLibvirtXml(bare);
    expect(xml).not.toMatch(/<loader|<tcg>|<filesystem|<interface|unshare/);
  });

  it('escapes text, attributes and comments, and refuses what XML cannot carry', () => {
    expect(escapeText(`a&b<c>'"`)).toBe(`a&amp;b&lt;c&gt;'"`);
    expect(escapeAttr(`a&'"\n<`)).toBe('a&amp;&apos;&quot;&#10;&lt;');
    expect(escapeComment('a--b---c-')).toBe('a- -b- - -c-');
    expect(() => escapeText('nul\u0000')).toThrow(/U\+0000/);
    expect(() => renderLibvirtXml({ ...plain, kernel: { path: '/k', cmdline: ['x=\u0007'] } })).toThrow(/XML cannot carry/);
  });

  it('refuses a rootfs image the nvdimm cannot map, as the argv does', () => {
    expect(() => renderLibvirtXml({ ...plain, rootfsImage: { path: '/i', sizeBytes: 3 * 1024 * 1024 } })).toThrow(/multiple of 2 MiB/);
  });
});

describe("libvirt's schema (virt-xml-validate)", () => {
  const work = mkdtempSync(join(tmpdir(), 'kata-ts-libvirt-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  function validate(name: string, xml: string) {
    const file = join(work, `${name}.xml`);
    writeFileSync(file, xml);
    const r = spawnSync('virt-xml-validate', [file, 'domain'], { encoding: 'utf8' });
    if (r.error) throw new Error(`virt-xml-validate: ${r.error.message} (apt-get install libvirt-clients libxml2-utils)`);
    return { ok: r.status === 0, out: `${r.stdout}${r.stderr}`, file };
  }

  it.each([
    ['plain', plain],
    ['pod', pod],
  ])('validates the %s sandbox document', (name, d) => {
    const r = validate(name, renderLibvirtXml(d));
    expect(r.out).toContain('validates');
    expect(r.ok).toBe(true);
  });

  it('is a real check: a document libvirt would not take fails', () => {
    const r = validate('broken', renderLibvirtXml(plain).replace("<rng model='virtio'>", "<rng model='bogus'>"));
    expect(r.ok).toBe(false);
    expect(r.out).toMatch(/fails to validate/);
  });

  it('keeps awkward paths and kernel parameters intact through the escaping', () => {
    const odd = { ...pod, kernel: { path: "/k/it's & <here>", cmdline: ['console=ttyS0', `x="a<b>&'c'"`] }, qmpSocketPath: '/run/kata--ts/qmp.sock' };
    const r = validate('odd', renderLibvirtXml(odd));
    expect(r.ok, r.out).toBe(true);
    // (xmllint ends what it prints with a newline)
    const xpath = (expr: string) => execFileSync('xmllint', ['--xpath', expr, r.file], { encoding: 'utf8' }).replace(/\n$/, '');
    expect(xpath('string(/domain/os/kernel)')).toBe("/k/it's & <here>");
    expect(xpath('string(/domain/os/cmdline)')).toBe(`console=ttyS0 x="a<b>&'c'"`);
    expect(xpath("string(//*[local-name()='arg'][2]/@value)")).toBe('socket,id=qmp0,path=/run/kata--ts/qmp.sock,server=on,wait=off');
  });
});
