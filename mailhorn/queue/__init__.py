"""The mail queue: the queue file format (:mod:`.queuefile`) and the on-disk
queue with durable writes, queue IDs, moves and recovery (:mod:`.store`)."""
