"""The pik3s lab: Raspberry-Pi-shaped test hosts in containers, a local K3s
release mirror, and a K3s simulator published on it.

Everything here is test equipment. The roles never know they run in the lab.
"""
