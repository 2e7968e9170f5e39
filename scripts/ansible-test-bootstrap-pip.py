"""Offline-friendly stand-in for the get-pip.py that ansible-test downloads.

ansible-test creates its sanity venvs without pip and fetches a get-pip.py
bootstrap from ci-files.testing.ansible.com, which CI machines here cannot
reach. ansible-test's documented workaround is to place a bootstrap script in
its cache. This one (written for pik3s, not PyPA's get-pip) installs pip with
the standard library's ensurepip, then asks that pip for the packages
ansible-test wants, from the package index this machine is configured with.
"""

import subprocess
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}

args = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
subprocess.run([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"],
               check=True, stdout=subprocess.DEVNULL)
sys.exit(subprocess.run([sys.executable, "-m", "pip", "install", *args], check=False).returncode)
