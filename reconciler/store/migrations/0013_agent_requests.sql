CREATE TABLE `agent_requests` (
	`id` text PRIMARY KEY NOT NULL,
	`node_id` text NOT NULL,
	`kind` text NOT NULL,
	`args` text NOT NULL,
	`state` text NOT NULL,
	`requested_by` text NOT NULL,
	`token` text NOT NULL,
	`reason` text NOT NULL,
	`created_at` integer NOT NULL,
	`deadline_at` integer NOT NULL,
	`delivered_at` integer,
	`started_at` integer,
	`finished_at` integer,
	`exit_code` integer,
	`signal` text,
	`output` text,
	`output_bytes` integer,
	`output_cut` integer,
	`duration_ms` integer,
	`detail` text
);
--> statement-breakpoint
CREATE INDEX `agent_requests_node` ON `agent_requests` (`node_id`,`created_at`);--> statement-breakpoint
CREATE INDEX `agent_requests_state` ON `agent_requests` (`state`);