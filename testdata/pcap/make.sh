#!/usr/bin/env bash
# Regenerates the capture files in this directory with Wireshark's own tools (text2pcap,
# editcap, mergecap; Wireshark 4.0.17 on Debian 12 made the committed ones). The reader is
# tested on them in engine/src/pcap/tests.rs (`foreign_files`), so it is checked on files
# dropscope did not write. Output differs between runs only in the section header's
# hardware/OS/application strings.
set -euo pipefail
cd "$(dirname "$0")"
export TZ=UTC
t() { text2pcap -q -t '%Y-%m-%d %H:%M:%S.%f' "$@" 2>/dev/null; }
t -l 1 eth.txt eth.tmp.pcapng
editcap -a '1:NO_SOCKET (3) at 0xffffffff81b2c3d4 netns 4026531840' \
        -a '2:a comment that is not a drop cause' \
        -a '3:DROP Policy denied (133) identity 2->4 ep 0 ifindex 3 bpf_lxc.c:1' \
        eth.tmp.pcapng ws-eth-comments.pcapng
editcap -F pcap eth.tmp.pcapng ws-eth-usec.pcap
editcap -F nsecpcap eth.tmp.pcapng ws-eth-nsec.pcap
t -l 113 -F pcap sll.txt ws-sll.pcap
t -l 276 sll2.txt sll2.tmp.pcapng
t -l 101 raw.txt raw.tmp.pcapng
mergecap -F pcapng -a -w ws-mixed.pcapng eth.tmp.pcapng sll2.tmp.pcapng raw.tmp.pcapng
# pcapng allows sections to be concatenated: two sections, each with its own interface.
cat ws-eth-comments.pcapng sll2.tmp.pcapng > ws-two-sections.pcapng
rm -f ./*.tmp.pcapng
