// A menu level as a Graph API interactive message: up to 3 options as reply buttons, more as a list.
import { LIMITS, type Menu, type MenuOption } from './schema.js';

export interface Level {
  /** The option whose sub-menu this is; null for the top level. */
  readonly node: string | null;
  readonly parent: string | null;
  readonly body: string;
  readonly options: MenuOption[];
}

/** The level at `node`, or null when the menu has no such option with children. */
export function levelAt(menu: Menu, node: string | null): Level | null {
  if (node === null) return { node: null, parent: null, body: menu.greeting, options: menu.options };
  const find = (options: MenuOption[], parent: string | null): Level | null => {
    for (const o of options) {
      if (o.id === node && o.options) return { node, parent, body: o.prompt ?? o.title, options: o.options };
      const deeper = o.options ? find(o.options, o.id) : null;
      if (deeper) return deeper;
    }
    return null;
  };
  return find(menu.options, null);
}

export function interactiveFor(level: Level, body: string, buttonLabel: string): Record<string, unknown> {
  if (level.options.length <= LIMITS.buttons.max) {
    return {
      type: 'button',
      body: { text: body },
      action: { buttons: level.options.map((o) => ({ type: 'reply', reply: { id: o.id, title: o.title } })) },
    };
  }
  return {
    type: 'list',
    body: { text: body },
    action: {
      button: buttonLabel,
      sections: [{ rows: level.options.map((o) => ({ id: o.id, title: o.title, ...(o.description ? { description: o.description } : {}) })) }],
    },
  };
}
