"""The speed layer: embedded broker, Faust worker landing clickstream events in the lake, producer,
and the merge of speed landings into the Delta master table (see CONTRIBUTING.md, lake layout)."""
