"""Steps: faults and operator actions, registered by `type`, one file per family. A step records
what it changed so that `undo` puts back exactly that."""
