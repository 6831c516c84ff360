"""Every expectation suite, one per mart and per raw table where a rule belongs there."""

from data_quality.suites.fidelity import SUITES as FIDELITY
from data_quality.suites.ips import SUITES as IPS
from data_quality.suites.outflow import SUITES as OUTFLOW
from data_quality.suites.raw import SUITES as RAW

ALL_SUITES = [*RAW, *IPS, *FIDELITY, *OUTFLOW]
