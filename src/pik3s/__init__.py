"""pik3s: deploy and operate K3s clusters on Raspberry Pis and Debian/Ubuntu hosts."""

__version__ = "0.1.0"
