"""Stories: report sections an experiment declares (`report: [{type: ...}]`), registered by type,
one file each. A story reads the run folder (spec.base.RunView) and renders only when declared."""
