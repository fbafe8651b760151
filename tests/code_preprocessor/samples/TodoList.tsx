// A todo list component with a reducer and a custom hook.
import React, { useReducer, useEffect } from "react";
import { fetchTodos } from "../api/todos";
import "./TodoList.css";

export interface Todo {
  id: number;
  title: string;
  done: boolean;
}

type Action = { type: "load"; todos: Todo[] } | { type: "toggle"; id: number };

function reducer(state: Todo[], action: Action): Todo[] {
  switch (action.type) {
    case "load":
      return action.todos;
    case "toggle":
      return state.map((t) => (t.id === action.id ? { ...t, done: !t.done } : t));
  }
}

/** Loads the todos once and keeps them in a reducer. */
export function useTodos(): [Todo[], (id: number) => void] {
  const [todos, dispatch] = useReducer(reducer, []);
  useEffect(() => {
    fetchTodos().then((loaded) => dispatch({ type: "load", todos: loaded }));
  }, []);
  const toggle = (id: number) => dispatch({ type: "toggle", id });
  return [todos, toggle];
}

// Renders one row.
const TodoItem = ({ todo, onToggle }: { todo: Todo; onToggle: (id: number) => void }) => (
  <li className={todo.done ? "done" : ""} onClick={() => onToggle(todo.id)}>
    {todo.title}
  </li>
);

export default class TodoList extends React.Component<{ title: string }> {
  render() {
    return <TodoListBody title={this.props.title} />;
  }
}

function TodoListBody({ title }: { title: string }) {
  const [todos, toggle] = useTodos();
  return (
    <section>
      <h1>{title}</h1>
      <ul>
        {todos.map((todo) => (
          <TodoItem key={todo.id} todo={todo} onToggle={toggle} />
        ))}
      </ul>
    </section>
  );
}
