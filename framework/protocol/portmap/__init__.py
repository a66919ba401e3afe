"""Port mapping on the local gateway, sans I/O: PCP (RFC 6887), NAT-PMP (RFC 6886) and
UPnP IGD (SSDP + HTTP/SOAP). The socket shell is ``framework.portmap.PortMapper``."""
