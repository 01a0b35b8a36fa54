"""The fault harness: the load (:mod:`.load`), the subscriber (:mod:`.subscriber`), the
accounting (:mod:`.books`) and the fault table (:mod:`.table`); the faults are in
:mod:`.faults`."""
