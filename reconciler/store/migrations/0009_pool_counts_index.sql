DROP INDEX `nodes_pool_state`;--> statement-breakpoint
CREATE INDEX `nodes_pool_state` ON `nodes` (`pool`,`state`,`origin`,`removal`);