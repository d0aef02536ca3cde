//! Cross-checks of the writers and the reader against pcap-file, tshark and tcpdump.
