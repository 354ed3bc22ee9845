"""Task ``control``, the workstation side: batch-reactor environments on the Gymnasium API, the
optimal-control reference every controller is scored against, the PID baseline, and the
reinforcement-learning agents (DQN, PPO) whose policies ship to the edge in advisory mode
behind a safety shield."""
